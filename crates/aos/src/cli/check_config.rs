//! `aos check-config`: prove a deployment can get an Altinn token before it subscribes to
//! events. It first lists each setting it read and where it came from (the environment or the
//! `--settings` file; never a value, some are secrets), so an operator sees at once when a
//! setting did not come from where they thought. The checks themselves are auth logic
//! ([`crate::auth::check`]); this prints them.

use std::io::Write;

use super::{CliError, SettingsFrom};
use crate::auth::check::{CheckError, check_config};
use crate::config::Settings;

/// Runs the checks, one line per finding on stdout. A bad setting (the key material included)
/// is a usage error; a step the configured services refused is `aos: check-config: …`, exit 1.
/// The origins are printed even when a setting is wrong: they help find why.
pub async fn run(from: &SettingsFrom) -> Result<(), CliError> {
    let source = from.source()?;
    let settings = Settings::from_source(&source);
    let mut stdout = std::io::stdout();
    // A closed stdout must not turn a good check into a failure.
    let _ = writeln!(stdout, "settings read:");
    for (name, origin) in source.found() {
        let _ = writeln!(stdout, "  {name}: {origin}");
    }
    let settings = settings.map_err(CliError::usage)?;
    check_config(&settings, &mut stdout)
        .await
        .map_err(|e| match e {
            CheckError::Settings(e) => CliError::from(e),
            CheckError::Failed(line) => CliError::failed(format!("check-config: {line}")),
        })
}

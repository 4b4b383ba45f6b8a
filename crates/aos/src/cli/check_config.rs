//! `aos check-config`: prove a deployment can get an Altinn token before it subscribes to
//! events. The checks themselves are auth logic ([`crate::auth::check`]); this prints them.

use super::{CliError, load_settings};
use crate::auth::check::{CheckError, check_config};

/// Runs the checks, one line per finding on stdout. A bad setting (the key material included)
/// is a usage error; a step the configured services refused is `aos: check-config: …`, exit 1.
pub async fn run() -> Result<(), CliError> {
    let settings = load_settings()?.settings;
    let mut stdout = std::io::stdout();
    check_config(&settings, &mut stdout)
        .await
        .map_err(|e| match e {
            CheckError::Settings(e) => CliError::from(e),
            CheckError::Failed(line) => CliError::failed(format!("check-config: {line}")),
        })
}

//! The one settings loader every command uses: the environment only, unless the global
//! `--settings FILE` names a `local.settings.json`-shaped file.

use std::path::PathBuf;

use super::error::CliError;
use crate::config::{SettingSource, Settings};

/// Where a command's settings come from: the environment, plus the file `--settings` named.
#[derive(Clone, Debug, Default)]
pub struct SettingsFrom {
    pub(super) file: Option<PathBuf>,
}

/// The settings as every command reads them, with their source for the few settings outside
/// [`Settings`] (`WebhookUrl`, read only by `aos subscriptions`).
pub(super) struct Loaded {
    pub(super) source: SettingSource,
    pub(super) settings: Settings,
}

impl SettingsFrom {
    /// The source: the environment, plus the named file's `Values`. A file that cannot be read
    /// or is not `local.settings.json`-shaped is a usage error naming it (exit 2).
    pub(super) fn source(&self) -> Result<SettingSource, CliError> {
        let source = SettingSource::from_environment();
        match &self.file {
            None => Ok(source),
            Some(path) => source.with_file(path).map_err(CliError::usage),
        }
    }

    /// For the commands that make their own settings (`aos dev`, `aos simulator`): a file
    /// given to them would be silently ignored, so it is refused.
    #[cfg(feature = "dev")]
    pub(super) fn refuse_file(&self, command: &str) -> Result<(), CliError> {
        match &self.file {
            None => Ok(()),
            Some(_) => Err(CliError::usage(format!(
                "--settings is not used by `aos {command}`, which makes its own settings"
            ))),
        }
    }
}

/// Loads the settings from where `from` says. Every missing or malformed setting is named in
/// one usage error (exit 2).
pub(super) fn load_settings(from: &SettingsFrom) -> Result<Loaded, CliError> {
    let source = from.source()?;
    let settings = Settings::from_source(&source).map_err(CliError::usage)?;
    Ok(Loaded { source, settings })
}

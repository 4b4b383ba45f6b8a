//! The one settings loader every command uses: the environment only, unless the global
//! `--settings FILE` names a `local.settings.json`-shaped file.

use std::path::PathBuf;

use super::error::CliError;
use crate::config::{
    BlobSettings, KeySource, QueueConnection, QueueSettings, SettingSource, Settings, TokenSettings,
};
use crate::redact::register_secret;

/// Where a command's settings come from: the environment, plus the file `--settings` named.
#[derive(Clone, Debug, Default)]
pub struct SettingsFrom {
    pub(super) file: Option<PathBuf>,
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
pub(super) fn load_settings(from: &SettingsFrom) -> Result<Settings, CliError> {
    let source = from.source()?;
    let settings = Settings::from_source(&source).map_err(CliError::usage)?;
    register_secrets(&settings);
    Ok(settings)
}

/// Registers every secret value the settings hold for exact masking in all output
/// (`redact::register_secret`), so each is masked even where no pattern would find it: the
/// webhook secret, a fixed Altinn token, the certificate password, the archive's account key,
/// and the queue connection string with the key or SAS inside it.
pub(super) fn register_secrets(settings: &Settings) {
    if let Some(secret) = &settings.webhook_secret {
        register_secret(secret.expose());
    }
    register_token_secrets(&settings.token);
    register_storage_secrets(&settings.blob, &settings.queues);
}

/// Registers the token's secrets (a fixed Altinn token, the certificate password): all that
/// commands using only Altinn settings hold.
pub(super) fn register_token_secrets(token: &TokenSettings) {
    match token {
        TokenSettings::Static(token) => register_secret(token.expose()),
        TokenSettings::Maskinporten(mp) => {
            if let KeySource::File { password, .. } = &mp.key {
                register_secret(password.expose());
            }
        }
    }
}

/// Registers the storage secrets (the archive's account key, the queue connection string and
/// the key or SAS inside it): all that commands using only storage settings hold.
pub(super) fn register_storage_secrets(blob: &BlobSettings, queues: &QueueSettings) {
    if let Some((_, key)) = &blob.account {
        register_secret(key.expose());
    }
    if let Some(QueueConnection::ConnectionString(cs)) = &queues.connection {
        register_secret(cs.expose());
        for (name, value) in cs.expose().split(';').filter_map(|p| p.split_once('=')) {
            let name = name.trim();
            if name.eq_ignore_ascii_case("AccountKey")
                || name.eq_ignore_ascii_case("SharedAccessSignature")
            {
                register_secret(value);
                // A SAS's signature on its own too (it also appears URL-decoded or alone).
                for (param, sig) in value.split('&').filter_map(|p| p.split_once('=')) {
                    if param.trim_start_matches('?') == "sig" {
                        register_secret(sig);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::redact;

    /// Every configured secret is masked exactly once the settings are loaded, even standing
    /// alone where no pattern would know it.
    #[test]
    fn configured_secrets_are_registered_for_exact_masking() {
        let key = "c2V0dGluZ3MtYWNjb3VudC1rZXktdGVzdA==";
        let queue_key = "cXVldWUtYWNjb3VudC1rZXktdGVzdC12YWx1ZQ==";
        let token = "fixed-altinn-token-for-the-test";
        let webhook = "webhook-secret-for-the-test";
        let settings = Settings::from_source(&SettingSource::from_pairs([
            (
                "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
                "https://ttd.apps.at22.altinn.cloud/".to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
                "https://platform.at22.altinn.cloud/".to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
                "https://acct.blob.core.windows.net/".to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__AccountName",
                "acct".to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__AccountKey",
                key.to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__AltinnToken",
                token.to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__WebhookSecret",
                webhook.to_string(),
            ),
            (
                "QueueStorageSettings__ConnectionString",
                format!("DefaultEndpointsProtocol=https;AccountName=q;AccountKey={queue_key}"),
            ),
        ]))
        .unwrap();
        register_secrets(&settings);
        let line = format!("{key} {queue_key} {token} {webhook}");
        assert_eq!(redact(&line), "REDACTED REDACTED REDACTED REDACTED");
    }
}

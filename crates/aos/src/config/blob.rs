//! The archive's storage account and its containers.

use super::error::{InvalidSettings, Problems, SettingsError};
use super::source::{SettingSource, aos};
use crate::domain::{BaseUrl, Secret};

/// How the archive storage account is reached.
#[derive(Clone)]
pub struct BlobSettings {
    /// e.g. `https://acct.blob.core.windows.net/` or `http://127.0.0.1:10000/devstoreaccount1/`.
    pub endpoint: BaseUrl,
    /// Account name and key: when the key is set, requests carry a short-lived account SAS;
    /// when absent, managed identity is used.
    pub account: Option<(String, Secret)>,
    /// Archive container, default `inbound`.
    pub container: String,
}

impl std::fmt::Debug for BlobSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSettings")
            .field("endpoint", &self.endpoint.to_string())
            .field("account", &self.account.as_ref().map(|(name, _)| name))
            .field("container", &self.container)
            .finish()
    }
}

impl BlobSettings {
    /// `BlobEndpoint`, `AccountName` + `AccountKey` (base64) and `StorageContainer`; every
    /// problem among them, not only the first.
    pub(super) fn from_source(src: &SettingSource) -> Result<Self, InvalidSettings> {
        let mut problems = Problems::default();
        let endpoint = problems.check(src.required_url(&aos("BlobEndpoint")));
        let account = problems.check(account(src));
        let container = problems.check(container_name(src, "StorageContainer", "inbound"));
        let (Some(endpoint), Some(account), Some(container)) = (endpoint, account, container)
        else {
            return Err(problems.into_error());
        };
        Ok(BlobSettings {
            endpoint,
            account,
            container,
        })
    }
}

/// `AccountName` + `AccountKey` (base64), when the key is set.
fn account(src: &SettingSource) -> Result<Option<(String, Secret)>, SettingsError> {
    match (src.get(&aos("AccountName")), src.secret(&aos("AccountKey"))) {
        (Some(name), Some(key)) => {
            use base64::Engine;
            if base64::engine::general_purpose::STANDARD
                .decode(key.expose())
                .is_err()
            {
                return Err(SettingsError::new(&aos("AccountKey"), "is not base64"));
            }
            Ok(Some((name, key)))
        }
        (None, Some(_)) => Err(SettingsError::new(
            &aos("AccountName"),
            "is required when AccountKey is set",
        )),
        _ => Ok(None),
    }
}

/// `RegisteredSubStorageContainer`: where `EventsSubscriber` stores Altinn's answer for each
/// added subscription file; default `active-subscriptions`.
pub(super) fn active_subscriptions_container(src: &SettingSource) -> Result<String, SettingsError> {
    container_name(src, "RegisteredSubStorageContainer", "active-subscriptions")
}

fn container_name(src: &SettingSource, key: &str, default: &str) -> Result<String, SettingsError> {
    src.storage_name(&aos(key), default, "container")
}

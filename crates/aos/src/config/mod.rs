//! Typed settings, parsed once at start.
//!
//! Names are the reference system's (`AltinnApplicationOwnerSystemSettings__…`,
//! `QueueStorageSettings__…`) so existing Function App settings keep working. A missing or
//! malformed required setting is a [`SettingsError`] that names the setting; `main` prints it
//! as one line and exits, so it never surfaces later as a panic or a storm of 500s.
//!
//! ## Module map
//!
//! Built on the domain types (`crate::domain`); nothing here imports the layers above.
//!
//! - `source.rs` — [`SettingSource`] (the environment, then `local.settings.json`), the one
//!   place the prefixes are written, and a typed getter per kind of value (string, bool, URL,
//!   secret, list, time, storage name), each failing with a [`SettingsError`] that names the
//!   setting.
//! - `altinn.rs` — the app and platform hosts, the org, the archived event types.
//! - `blob.rs` — [`BlobSettings`]: the archive's storage account and containers.
//! - `queues.rs` — [`QueueSettings`], [`QueueConnection`]: queue names and their connection.
//! - `token.rs` — [`TokenSettings`]: a static token, or Maskinporten
//!   ([`MaskinportenSettings`]) and where its key comes from ([`KeySource`]).
//! - `feedback.rs` — [`FeedbackSettings`]: the feedback step's data type and template.
//! - `reconcile.rs` — `ReconcileApps` and [`CatchUpSettings`].
//! - this file — [`Settings`]: every area, read in one order so the first problem reported is
//!   always the same one.

mod altinn;
mod blob;
mod feedback;
mod queues;
mod reconcile;
mod source;
mod token;

pub use altinn::DEFAULT_EVENT_TYPE;
pub use blob::BlobSettings;
pub use feedback::{DEFAULT_TEMPLATE, FeedbackSettings};
pub use queues::{QueueConnection, QueueSettings};
pub use reconcile::CatchUpSettings;
pub use source::{SettingSource, SettingsError, parse_time};
pub use token::{
    DEFAULT_CERT_SECRET_NAME, DEFAULT_MASKINPORTEN_SCOPES, KeySource, MaskinportenSettings,
    TokenSettings,
};

use crate::domain::{AppName, BaseUrl, OrgName, Secret};

/// Every setting the handler needs, parsed and checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub apps_base_url: BaseUrl,
    pub platform_base_url: BaseUrl,
    /// The org, for work that has no event to read it from (reconciliation).
    pub org: Option<OrgName>,
    /// `ReconcileApps`: the apps the reconciler queries (comma-separated `org/app`); empty means
    /// every app of `org` that Storage returns for an org-wide query.
    pub reconcile_apps: Vec<(OrgName, AppName)>,
    pub blob: BlobSettings,
    pub queues: QueueSettings,
    /// `RegisteredSubStorageContainer`: where `EventsSubscriber` stores Altinn's answer for
    /// each added subscription file; default `active-subscriptions`.
    pub active_subscriptions_container: String,
    /// CloudEvent types that are archived; others are answered 200 and dropped.
    pub event_types: Vec<String>,
    pub token: TokenSettings,
    /// The `?code=` secret the standalone webhook requires (`aos run`); unused under Functions,
    /// where the function key plays this role.
    pub webhook_secret: Option<Secret>,
    /// The feedback step (`XMLFeedbackDataType` + `XMLFeedbackEventType`); `None` = off.
    pub feedback: Option<FeedbackSettings>,
    /// Catch-up from the Events pull API (`EventsCatchUp`, `EventsCatchUpFrom`).
    pub catch_up: CatchUpSettings,
}

impl Settings {
    pub fn from_source(src: &SettingSource) -> Result<Self, SettingsError> {
        let apps_base_url = altinn::apps_base_url(src)?;
        let platform_base_url = altinn::platform_base_url(src)?;
        let org = altinn::org(src, &apps_base_url)?;
        let reconcile_apps = reconcile::reconcile_apps(src)?;
        let catch_up = CatchUpSettings::from_source(src, &reconcile_apps)?;
        let blob = BlobSettings::from_source(src)?;
        let active_subscriptions_container = blob::active_subscriptions_container(src)?;
        let queues = QueueSettings::from_source(src)?;
        let event_types = altinn::event_types(src);
        let token = TokenSettings::from_source(src)?;
        Ok(Settings {
            apps_base_url,
            platform_base_url,
            org,
            reconcile_apps,
            blob,
            queues,
            active_subscriptions_container,
            event_types,
            token,
            webhook_secret: src.secret(&source::aos("WebhookSecret")),
            feedback: FeedbackSettings::from_source(src)?,
            catch_up,
        })
    }

    pub fn processes_event_type(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}

/// The smallest valid set of settings, for the area files' tests.
#[cfg(test)]
fn minimal() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
            "https://ttd.apps.tt02.altinn.no",
        ),
        (
            "AltinnApplicationOwnerSystemSettings:PlatformBaseUrl",
            "https://platform.tt02.altinn.no/",
        ),
        (
            "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
            "http://127.0.0.1:10000/devstoreaccount1",
        ),
        ("AltinnApplicationOwnerSystemSettings__AltinnToken", "t"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_settings_with_defaults() {
        let s = Settings::from_source(&SettingSource::from_pairs(minimal())).unwrap();
        assert_eq!(
            s.apps_base_url.to_string(),
            "https://ttd.apps.tt02.altinn.no/"
        );
        assert_eq!(
            s.platform_base_url.to_string(),
            "https://platform.tt02.altinn.no/"
        );
        assert_eq!(
            s.blob.endpoint.to_string(),
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
        assert_eq!(s.blob.container, "inbound");
        assert_eq!(s.queues.inbound, "events-inbound");
        assert_eq!(s.queues.confirmation, "events-confirmation");
        assert_eq!(s.org.as_ref().map(|o| o.as_str()), Some("ttd"));
        assert_eq!(s.event_types, vec![DEFAULT_EVENT_TYPE.to_string()]);
    }

    #[test]
    fn missing_setting_is_named() {
        let mut pairs = minimal();
        pairs.remove(0);
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        assert_eq!(
            err.name,
            "AltinnApplicationOwnerSystemSettings__AppsBaseUrl"
        );
        assert!(err.to_string().contains("is required"));
    }

    #[test]
    fn org_is_not_required_from_plain_hosts() {
        let mut pairs = minimal();
        pairs[0].1 = "http://127.0.0.1:5000/";
        let s = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap();
        assert!(s.org.is_none());
    }
}

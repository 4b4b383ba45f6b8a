//! Typed settings, parsed once at start.
//!
//! Names are the reference system's (`AltinnApplicationOwnerSystemSettings__…`,
//! `QueueStorageSettings__…`) so existing Function App settings keep working. They come from
//! the environment, and from a settings file only when the operator names one (`--settings`).
//! A missing or malformed setting is a [`SettingsError`] that names the setting; reading goes
//! on after one, and [`InvalidSettings`] lists them all, so an operator fixes a configuration in
//! one round; `main` prints it as one line and exits, so it never surfaces later as a panic or a
//! storm of 500s.
//!
//! ## Module map
//!
//! Built on the domain types (`crate::domain`); nothing here imports the layers above.
//!
//! - `error.rs` — [`SettingsError`] (one setting), [`InvalidSettings`] (all of them) and the
//!   collector the areas use to go on after a bad setting.
//! - `source.rs` — [`SettingSource`] (the environment, then the file `--settings` names, if
//!   any; each setting found remembered with its [`Origin`]), the one place the prefixes are
//!   written, and a typed getter per kind of value (string, bool, URL, secret, list, time,
//!   storage name), each failing with a [`SettingsError`] that names the setting.
//! - `altinn.rs` — the app and platform hosts, the org, the archived event types.
//! - `blob.rs` — [`BlobSettings`]: the archive's storage account and containers.
//! - `queues.rs` — [`QueueSettings`], [`QueueConnection`]: queue names and their connection.
//! - `token.rs` — [`TokenSettings`]: a static token, or Maskinporten
//!   ([`MaskinportenSettings`]) and where its key comes from ([`KeySource`]); never both.
//! - `feedback.rs` — [`FeedbackSettings`]: the feedback step's data type and template.
//! - `reconcile.rs` — `ReconcileApps`, [`CatchUpSettings`] and `PermanentFailureHoldDays`.
//! - this file — [`Settings`]: every area, read in one order so the problems are always listed
//!   in the same order; [`StorageSettings`]: the blob and queue areas alone, for commands that
//!   touch only storage (`aos poison`).

mod altinn;
mod blob;
mod error;
mod feedback;
mod queues;
mod reconcile;
mod source;
mod token;

pub use altinn::DEFAULT_EVENT_TYPE;
pub use blob::BlobSettings;
pub use error::{InvalidSettings, SettingsError};
pub use feedback::{DEFAULT_TEMPLATE, FeedbackSettings};
pub use queues::{QueueConnection, QueueSettings};
pub use reconcile::{CatchUpSettings, DEFAULT_FAILURE_HOLD_DAYS};
pub use source::{Origin, SettingSource, SettingsFileError, aos, parse_time, queue_storage};
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
    /// `PermanentFailureHoldDays`: how long a permanent failure keeps reconciliation and
    /// catch-up from queueing its instance again (zero: not at all).
    pub failure_hold: time::Duration,
}

impl Settings {
    /// Every setting, checked. All problems are reported together, except where one setting
    /// only makes sense once another is right: catch-up is not checked while `ReconcileApps` is
    /// malformed, and inside an area some checks still stop at the first problem (the feedback
    /// pair and its template, each `ReconcileApps` item, the identity-based queue connection,
    /// the Maskinporten key source).
    pub fn from_source(src: &SettingSource) -> Result<Self, InvalidSettings> {
        let mut problems = error::Problems::default();
        let apps_base_url = problems.check(altinn::apps_base_url(src));
        let platform_base_url = problems.check(altinn::platform_base_url(src));
        let org = problems.check(altinn::org(src, apps_base_url.as_ref()));
        let reconcile_apps = problems.check(reconcile::reconcile_apps(src));
        let catch_up = reconcile_apps
            .as_deref()
            .and_then(|apps| problems.check(CatchUpSettings::from_source(src, apps)));
        let blob = problems.check_all(BlobSettings::from_source(src));
        let active_subscriptions_container =
            problems.check(blob::active_subscriptions_container(src));
        let queues = problems.check_all(QueueSettings::from_source(src));
        let event_types = altinn::event_types(src);
        let token = problems.check_all(TokenSettings::from_source(src));
        let webhook_secret = src.secret(&source::aos("WebhookSecret"));
        let feedback = problems.check(FeedbackSettings::from_source(src));
        let failure_hold = problems.check(reconcile::failure_hold(src));
        let (
            Some(apps_base_url),
            Some(platform_base_url),
            Some(org),
            Some(reconcile_apps),
            Some(catch_up),
            Some(blob),
            Some(active_subscriptions_container),
            Some(queues),
            Some(token),
            Some(feedback),
            Some(failure_hold),
        ) = (
            apps_base_url,
            platform_base_url,
            org,
            reconcile_apps,
            catch_up,
            blob,
            active_subscriptions_container,
            queues,
            token,
            feedback,
            failure_hold,
        )
        else {
            return Err(problems.into_error());
        };
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
            webhook_secret,
            feedback,
            catch_up,
            failure_hold,
        })
    }

    pub fn processes_event_type(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == event_type)
    }
}

/// The settings of commands that touch only storage (`aos poison`): the archive's account
/// (where `aos-state` is), the queues, and the app host when it is set (to name instances).
/// Nothing of Altinn's tokens is needed, so a storage-only shell can run them.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub blob: BlobSettings,
    pub queues: QueueSettings,
    pub apps_base_url: Option<BaseUrl>,
    /// `PermanentFailureHoldDays`, to tell the holds in force from expired ones.
    pub failure_hold: time::Duration,
}

impl StorageSettings {
    /// The blob and queue areas and `AppsBaseUrl` (optional here), every problem listed.
    pub fn from_source(src: &SettingSource) -> Result<Self, InvalidSettings> {
        let mut problems = error::Problems::default();
        let blob = problems.check_all(BlobSettings::from_source(src));
        let queues = problems.check_all(QueueSettings::from_source(src));
        let apps_base_url = problems.check(src.url(&source::aos("AppsBaseUrl")));
        let failure_hold = problems.check(reconcile::failure_hold(src));
        match (blob, queues, apps_base_url, failure_hold) {
            (Some(blob), Some(queues), Some(apps_base_url), Some(failure_hold)) => {
                Ok(StorageSettings {
                    blob,
                    queues,
                    apps_base_url,
                    failure_hold,
                })
            }
            _ => Err(problems.into_error()),
        }
    }
}

/// The settings of commands that talk only to Altinn's platform (`aos subscriptions`): where
/// the platform is, the token, and — optional here, needed only to build a source filter —
/// the app host and `ReconcileApps`. No storage setting, so a shell without storage access can
/// manage subscriptions.
#[derive(Clone, Debug)]
pub struct AltinnSettings {
    pub platform_base_url: BaseUrl,
    pub apps_base_url: Option<BaseUrl>,
    pub reconcile_apps: Vec<(OrgName, AppName)>,
    pub token: TokenSettings,
}

impl AltinnSettings {
    /// The platform, the token and the optional app host and app list, every problem listed.
    pub fn from_source(src: &SettingSource) -> Result<Self, InvalidSettings> {
        let mut problems = error::Problems::default();
        let platform_base_url = problems.check(altinn::platform_base_url(src));
        let apps_base_url = problems.check(src.url(&source::aos("AppsBaseUrl")));
        let reconcile_apps = problems.check(reconcile::reconcile_apps(src));
        let token = problems.check_all(TokenSettings::from_source(src));
        match (platform_base_url, apps_base_url, reconcile_apps, token) {
            (Some(platform_base_url), Some(apps_base_url), Some(reconcile_apps), Some(token)) => {
                Ok(AltinnSettings {
                    platform_base_url,
                    apps_base_url,
                    reconcile_apps,
                    token,
                })
            }
            _ => Err(problems.into_error()),
        }
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
            err.names(),
            ["AltinnApplicationOwnerSystemSettings__AppsBaseUrl"]
        );
        assert!(err.to_string().contains("is required"));
    }

    #[test]
    fn every_problem_is_listed_in_one_error() {
        let mut pairs = minimal();
        pairs.retain(|(k, _)| !k.ends_with("AppsBaseUrl") && !k.ends_with("BlobEndpoint"));
        pairs.push(("AltinnApplicationOwnerSystemSettings__Org", "NOT AN ORG"));
        pairs.push(("AltinnApplicationOwnerSystemSettings__AccountKey", "k2V5"));
        pairs.push(("QueueStorageSettings__InboundQueueName", "Bad_Name"));
        pairs.push(("AltinnApplicationOwnerSystemSettings__EventsCatchUp", "yes"));
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__XMLFeedbackDataType",
            "feedback",
        ));
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        assert_eq!(
            err.names(),
            [
                "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
                "AltinnApplicationOwnerSystemSettings__Org",
                "AltinnApplicationOwnerSystemSettings__EventsCatchUp",
                "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
                "AltinnApplicationOwnerSystemSettings__AccountName",
                "QueueStorageSettings__InboundQueueName",
                "AltinnApplicationOwnerSystemSettings__XMLFeedbackEventType",
            ]
        );
        assert!(
            err.to_string().starts_with(
                "7 settings to fix: setting AltinnApplicationOwnerSystemSettings__AppsBaseUrl: \
                 is required but not set; setting AltinnApplicationOwnerSystemSettings__Org: "
            ),
            "{err}"
        );
    }

    #[test]
    fn org_is_not_required_from_plain_hosts() {
        let mut pairs = minimal();
        pairs[0].1 = "http://127.0.0.1:5000/";
        let s = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap();
        assert!(s.org.is_none());
    }
}

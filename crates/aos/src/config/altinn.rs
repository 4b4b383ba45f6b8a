//! Altinn: the app and platform hosts, the org, and which event types are archived.

use super::error::SettingsError;
use super::source::{SettingSource, aos};
use crate::domain::{BaseUrl, OrgName};

/// The event type archived by default: only completed instances are ready to archive.
pub const DEFAULT_EVENT_TYPE: &str = "app.instance.process.completed";

/// `AppsBaseUrl`: the app host events come from (`https://{org}.apps.{env}/`).
pub(super) fn apps_base_url(src: &SettingSource) -> Result<BaseUrl, SettingsError> {
    src.required_url(&aos("AppsBaseUrl"))
}

/// `PlatformBaseUrl`: Storage, Events and the token exchange.
pub(super) fn platform_base_url(src: &SettingSource) -> Result<BaseUrl, SettingsError> {
    src.required_url(&aos("PlatformBaseUrl"))
}

/// `Org`, or the org in the app host's name when it is the usual `{org}.apps.…` (`None` for
/// the host when `AppsBaseUrl` itself is wrong: that is already reported).
pub(super) fn org(
    src: &SettingSource,
    apps_base_url: Option<&BaseUrl>,
) -> Result<Option<OrgName>, SettingsError> {
    let name = aos("Org");
    match src.get(&name) {
        Some(value) => OrgName::parse(&value)
            .map(Some)
            .map_err(|e| SettingsError::new(&name, format!("`{value}`: {e}"))),
        None => Ok(apps_base_url.and_then(org_from_apps_host)),
    }
}

/// `EventTypes`: comma-separated; default [`DEFAULT_EVENT_TYPE`].
pub(super) fn event_types(src: &SettingSource) -> Vec<String> {
    src.list(&aos("EventTypes"))
        .unwrap_or_else(|| vec![DEFAULT_EVENT_TYPE.to_string()])
}

/// `ttd` from `https://ttd.apps.tt02.altinn.no/`; `None` for plain hosts (tests, simulators).
fn org_from_apps_host(base: &BaseUrl) -> Option<OrgName> {
    let host = base.url().host_str()?;
    let mut labels = host.split('.');
    let first = labels.next()?;
    (labels.next() == Some("apps"))
        .then(|| OrgName::parse(first).ok())
        .flatten()
}

//! Reconciliation and catch-up: which apps are queried, and where the Events pull API starts.

use super::error::SettingsError;
use super::source::{SettingSource, aos};
use crate::domain::{AppName, OrgName};

/// Catch-up from the Events pull API (`crate::pipeline::catchup`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatchUpSettings {
    /// `EventsCatchUp=true`: the `EventsReconciler` timer also catches up (off by default; the
    /// `aos catch-up` command runs whatever this says). Requires `ReconcileApps`.
    pub enabled: bool,
    /// `EventsCatchUpFrom`: where an app without a cursor starts (RFC 3339 or `YYYY-MM-DD`);
    /// `None` = one day before the run.
    pub first_from: Option<time::OffsetDateTime>,
}

impl CatchUpSettings {
    /// `EventsCatchUp` and `EventsCatchUpFrom`; catch-up needs the apps listed.
    pub(super) fn from_source(
        src: &SettingSource,
        reconcile_apps: &[(OrgName, AppName)],
    ) -> Result<Self, SettingsError> {
        let enabled = src.bool(&aos("EventsCatchUp"), false)?;
        let first_from = src.time(&aos("EventsCatchUpFrom"))?;
        if enabled && reconcile_apps.is_empty() {
            return Err(SettingsError::new(
                &aos("ReconcileApps"),
                "is required when EventsCatchUp is true (the Events pull API is per app)",
            ));
        }
        Ok(CatchUpSettings {
            enabled,
            first_from,
        })
    }
}

/// How long a recorded permanent failure keeps reconciliation and catch-up from queueing its
/// instance again, by default (design §2.6).
pub const DEFAULT_FAILURE_HOLD_DAYS: u64 = 7;

/// `PermanentFailureHoldDays` (0–365, default [`DEFAULT_FAILURE_HOLD_DAYS`]): an instance whose
/// processing failed permanently is not queued again by reconciliation or catch-up until an
/// operator replays it or its record is this old. 0 turns the hold off.
pub(super) fn failure_hold(src: &SettingSource) -> Result<time::Duration, SettingsError> {
    let days = src.number(
        &aos("PermanentFailureHoldDays"),
        DEFAULT_FAILURE_HOLD_DAYS,
        0..=365,
    )?;
    // Test-only: a hold of seconds, so a test can see one expire.
    if let Some(secs) = std::env::var(TEST_FAILURE_HOLD_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        return Ok(time::Duration::seconds(secs.into()));
    }
    Ok(time::Duration::days(days as i64))
}

/// Test-only environment variable: the hold age in seconds instead of days.
const TEST_FAILURE_HOLD_ENV: &str = "AOS_TEST_FAILURE_HOLD_SECS";

/// `ReconcileApps`: comma-separated `org/app`, each name checked like an event's.
pub(super) fn reconcile_apps(
    src: &SettingSource,
) -> Result<Vec<(OrgName, AppName)>, SettingsError> {
    let name = aos("ReconcileApps");
    let Some(items) = src.list(&name) else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| {
            let bad = |problem: String| SettingsError::new(&name, format!("`{item}`: {problem}"));
            let (org, app) = item
                .split_once('/')
                .ok_or_else(|| bad("is not `org/app`".into()))?;
            Ok((
                OrgName::parse(org).map_err(|e| bad(format!("org {e}")))?,
                AppName::parse(app).map_err(|e| bad(format!("app {e}")))?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Settings, minimal};
    use super::*;

    #[test]
    fn reconcile_apps_are_parsed_and_checked() {
        let s = Settings::from_source(&SettingSource::from_pairs(minimal())).unwrap();
        assert!(s.reconcile_apps.is_empty());
        let mut pairs = minimal();
        pairs.push((
            "AltinnApplicationOwnerSystemSettings__ReconcileApps",
            " ttd/app-one, ttd/app2 ,",
        ));
        let s = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap();
        let apps: Vec<String> = s
            .reconcile_apps
            .iter()
            .map(|(o, a)| format!("{}/{}", o.as_str(), a.as_str()))
            .collect();
        assert_eq!(apps, ["ttd/app-one", "ttd/app2"]);
        for bad in ["ttd", "ttd/../x", "TTD/app", "ttd/app/extra"] {
            let mut pairs = minimal();
            pairs.push(("AltinnApplicationOwnerSystemSettings__ReconcileApps", bad));
            let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
            assert_eq!(
                err.names(),
                ["AltinnApplicationOwnerSystemSettings__ReconcileApps"],
                "{bad}: {err}"
            );
        }
    }
}

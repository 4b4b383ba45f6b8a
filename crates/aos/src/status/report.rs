//! What `aos status` reports and the verdict on it.
//!
//! The verdict is the worst problem found:
//! - **broken** — the system cannot do its work until someone acts: the archive container
//!   unreachable or refusing writes, `aos-state` or a step queue unreachable, the
//!   Maskinporten key not loadable, the certificate expired or not yet valid, a setting
//!   malformed;
//! - **degraded** — it works, but something needs a look: a poison queue holds messages, an
//!   instance is held after a permanent failure, the certificate expires within 30 days, an
//!   app of `ReconcileApps` has no validated subscription (to `WebhookUrl`, when set), Altinn
//!   could not be asked, or a part of the state could not be read in time;
//! - **healthy** — none of these.
//!
//! Failure records alone are shown, not judged: a retried failure that then succeeded leaves
//! its record, and what failed for good is in a poison queue and held. Subscriptions of other
//! systems (other source filters) are listed, not judged.
//!
//! Queue depths alone (a backlog) are shown, not judged: a burst is normal, and how long is
//! too long depends on the deployment (alert on `aos.queue.depth` for that).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pipeline::reconcile::LastRun;

/// Days of certificate validity below which the report is degraded (as `aos check-config`
/// warns, and the Bicep alert fires).
pub const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// The verdict; `aos status` exits 0, 1 or 3 for it (`cli/status.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Healthy,
    Degraded,
    Broken,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
        }
    }
}

/// One finding that makes the report less than healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Verdict,
    /// What is wrong and what to do, in one line.
    pub what: String,
}

/// A blob container: answered, exists, and (for the archive) accepted a write.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerCheck {
    pub container: String,
    pub reachable: bool,
    pub exists: bool,
    /// Only the archive is probed for writing; `None` for the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
    /// Why not, in a few redacted words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One queue's depth (the service's approximate count); `None` when it could not be read.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    pub name: String,
    pub poison: bool,
    pub messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Failure records (`aos-state/failures/`) written in the last [`FailureSummary::hours`].
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureSummary {
    pub hours: u32,
    /// Records written in the window.
    pub recent: u64,
    /// Records read (the newest; `storage.rs` bounds how many) and how many of them were not
    /// readable failure records.
    pub read: u64,
    pub unreadable: u64,
    /// `"<queue> <kind>"` → events (among those read) whose last failure is of that kind.
    pub by_kind: BTreeMap<String, u64>,
}

/// A part of the state that could not be read in time, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unknown {
    pub what: String,
    pub why: String,
}

/// One app's catch-up cursor.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorStatus {
    pub app: String,
    pub after: Option<String>,
    pub updated: Option<String>,
}

/// The storage side of the report.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoragePart {
    pub archive: ContainerCheck,
    pub state: ContainerCheck,
    pub queues: Vec<QueueDepth>,
    pub failures: Option<FailureSummary>,
    /// Instances held out of reconciliation after a permanent failure (holds in force).
    pub holds: Option<u64>,
    /// The reconciler's last completed run as it recorded it, if any.
    pub last_reconcile: Option<LastRun>,
    pub catch_up: Vec<CursorStatus>,
    /// Parts of `aos-state` that could not be read.
    pub unknown: Vec<Unknown>,
}

/// The certificate of the Maskinporten key.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    pub subject: String,
    pub not_after: String,
    pub days_left: i64,
    /// Its validity has not started yet (a clock or a certificate issued for later).
    pub not_yet_valid: bool,
}

/// Whether the Altinn token's key can be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    Ok,
    NotLoadable,
    NotChecked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Ok => "ok",
            KeyState::NotLoadable => "not loadable",
            KeyState::NotChecked => "not checked",
        }
    }
}

/// The Altinn token's key: loadable or not (with why), or not checked (with why).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    pub status: KeyState,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One subscription as Altinn lists it (the endpoint without its query).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    pub id: u64,
    pub validated: bool,
    pub source: Option<String>,
    #[serde(rename = "type")]
    pub type_filter: Option<String>,
    pub endpoint: Option<String>,
}

/// The subscriptions: `checked` is false (with why) when they could not be listed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionsStatus {
    pub checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub items: Vec<SubscriptionStatus>,
    /// `ReconcileApps` entries without a validated subscription (source filter
    /// `{AppsBaseUrl}{org}/{app}`, and the endpoint `WebhookUrl` when that is set).
    pub missing: Vec<String>,
}

/// The Altinn side of the report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AltinnPart {
    pub key: KeyStatus,
    pub subscriptions: SubscriptionsStatus,
    /// The Altinn checks could not run because their settings are absent (a storage-only
    /// shell): said, not judged.
    #[serde(skip)]
    pub not_checked: bool,
    /// Settings that are set but malformed: the processing cannot start (broken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings_error: Option<String>,
}

/// The whole report, as `aos status --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub status: Verdict,
    pub problems: Vec<Problem>,
    #[serde(flatten)]
    pub storage: StoragePart,
    #[serde(flatten)]
    pub altinn: AltinnPart,
}

impl StatusReport {
    /// The report with its verdict: every problem found, worst first.
    pub fn new(storage: StoragePart, altinn: AltinnPart) -> Self {
        let mut problems = storage_problems(&storage);
        problems.extend(altinn_problems(&altinn));
        problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
        let status = problems
            .iter()
            .map(|p| p.severity)
            .max()
            .unwrap_or(Verdict::Healthy);
        StatusReport {
            status,
            problems,
            storage,
            altinn,
        }
    }
}

fn problem(severity: Verdict, what: impl Into<String>) -> Problem {
    Problem {
        severity,
        what: what.into(),
    }
}

fn storage_problems(part: &StoragePart) -> Vec<Problem> {
    let mut problems = Vec::new();
    let archive = &part.archive;
    if !archive.reachable {
        problems.push(problem(
            Verdict::Broken,
            format!(
                "the archive container {} cannot be reached",
                archive.container
            ),
        ));
    } else if archive.writable == Some(false) {
        problems.push(problem(
            Verdict::Broken,
            format!(
                "the archive container {} refuses writes (role assignment or SAS permissions)",
                archive.container
            ),
        ));
    }
    if archive.reachable && !part.state.reachable {
        problems.push(problem(
            Verdict::Broken,
            format!(
                "the state container {} cannot be reached",
                part.state.container
            ),
        ));
    }
    for queue in &part.queues {
        match queue.messages {
            None if !queue.poison => problems.push(problem(
                Verdict::Broken,
                format!("queue {} cannot be read", queue.name),
            )),
            Some(n) if queue.poison && n > 0 => problems.push(problem(
                Verdict::Degraded,
                format!(
                    "{} holds {n} message(s): see `aos poison list`, fix the cause, then \
                     `aos poison replay`",
                    queue.name
                ),
            )),
            _ => {}
        }
    }
    if let Some(held) = part.holds.filter(|n| *n > 0) {
        problems.push(problem(
            Verdict::Degraded,
            format!(
                "{held} instance(s) held after a permanent failure: see `aos poison list`, \
                 then `aos poison replay` once the cause is fixed"
            ),
        ));
    }
    for unknown in &part.unknown {
        problems.push(problem(
            Verdict::Degraded,
            format!("{} could not be read: {}", unknown.what, unknown.why),
        ));
    }
    problems
}

fn altinn_problems(part: &AltinnPart) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(settings) = &part.settings_error {
        problems.push(problem(
            Verdict::Broken,
            format!("settings to fix (the handler cannot start with them): {settings}"),
        ));
    }
    if part.not_checked {
        return problems;
    }
    let key = &part.key;
    if key.status == KeyState::NotLoadable {
        problems.push(problem(
            Verdict::Broken,
            format!(
                "the Maskinporten key ({}) cannot be loaded: run `aos check-config`",
                key.source
            ),
        ));
    }
    if let Some(cert) = &key.certificate {
        if cert.not_yet_valid {
            problems.push(problem(
                Verdict::Broken,
                "the certificate is not valid yet (check the clock, or the certificate's start)",
            ));
        } else if cert.days_left < 0 {
            problems.push(problem(
                Verdict::Broken,
                format!("the certificate expired on {}", cert.not_after),
            ));
        } else if cert.days_left < CERTIFICATE_WARNING_DAYS {
            problems.push(problem(
                Verdict::Degraded,
                format!(
                    "the certificate expires in {} days ({}): renew it",
                    cert.days_left, cert.not_after
                ),
            ));
        }
    }
    let subs = &part.subscriptions;
    if !subs.checked {
        problems.push(problem(
            Verdict::Degraded,
            format!(
                "the subscriptions could not be listed: {}",
                subs.error.as_deref().unwrap_or("unknown error")
            ),
        ));
    }
    for app in &subs.missing {
        problems.push(problem(
            Verdict::Degraded,
            format!("no validated subscription for {app} (`aos subscriptions verify`)"),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reachable(container: &str) -> ContainerCheck {
        ContainerCheck {
            container: container.into(),
            reachable: true,
            exists: true,
            writable: Some(true),
            error: None,
        }
    }

    fn healthy_storage() -> StoragePart {
        StoragePart {
            archive: reachable("archive"),
            state: reachable("aos-state"),
            queues: vec![
                QueueDepth {
                    name: "events-inbound".into(),
                    poison: false,
                    messages: Some(250),
                    error: None,
                },
                QueueDepth {
                    name: "events-inbound-poison".into(),
                    poison: true,
                    messages: Some(0),
                    error: None,
                },
            ],
            failures: Some(FailureSummary {
                hours: 24,
                ..Default::default()
            }),
            holds: Some(0),
            ..Default::default()
        }
    }

    fn healthy_altinn() -> AltinnPart {
        AltinnPart {
            key: KeyStatus {
                status: KeyState::Ok,
                source: "KeyVault__KeyVaultURI".into(),
                certificate: Some(CertificateStatus {
                    subject: "CN=x".into(),
                    not_after: "2027-06-01T00:00:00Z".into(),
                    days_left: 182,
                    not_yet_valid: false,
                }),
                error: None,
            },
            subscriptions: SubscriptionsStatus {
                checked: true,
                error: None,
                items: vec![],
                missing: vec![],
            },
            not_checked: false,
            settings_error: None,
        }
    }

    #[test]
    fn a_backlog_alone_is_healthy() {
        let report = StatusReport::new(healthy_storage(), healthy_altinn());
        assert_eq!(report.status, Verdict::Healthy);
        assert!(report.problems.is_empty());
    }

    #[test]
    fn the_worst_problem_decides_and_comes_first() {
        let mut storage = healthy_storage();
        storage.queues[1].messages = Some(2);
        storage.archive.writable = Some(false);
        let report = StatusReport::new(storage, healthy_altinn());
        assert_eq!(report.status, Verdict::Broken);
        assert_eq!(report.problems.len(), 2);
        assert!(report.problems[0].what.contains("refuses writes"));
        assert!(
            report.problems[1]
                .what
                .contains("events-inbound-poison holds 2")
        );
    }

    #[test]
    fn certificate_days_decide_between_healthy_degraded_and_broken() {
        for (days, verdict) in [
            (30, Verdict::Healthy),
            (29, Verdict::Degraded),
            (0, Verdict::Degraded),
            (-1, Verdict::Broken),
        ] {
            let mut altinn = healthy_altinn();
            altinn.key.certificate.as_mut().unwrap().days_left = days;
            assert_eq!(
                StatusReport::new(healthy_storage(), altinn).status,
                verdict,
                "{days} days"
            );
        }
    }

    #[test]
    fn altinn_checks_not_made_for_lack_of_settings_are_not_problems() {
        let mut altinn = healthy_altinn();
        altinn.not_checked = true;
        altinn.key.status = KeyState::NotChecked;
        altinn.subscriptions.checked = false;
        assert_eq!(
            StatusReport::new(healthy_storage(), altinn).status,
            Verdict::Healthy
        );
    }

    #[test]
    fn an_unreadable_step_queue_is_broken_and_a_missing_subscription_degraded() {
        let mut storage = healthy_storage();
        storage.queues[0].messages = None;
        assert_eq!(
            StatusReport::new(storage, healthy_altinn()).status,
            Verdict::Broken
        );
        let mut altinn = healthy_altinn();
        altinn.subscriptions.missing.push("ttd/app".into());
        assert_eq!(
            StatusReport::new(healthy_storage(), altinn).status,
            Verdict::Degraded
        );
        let mut altinn = healthy_altinn();
        altinn.subscriptions.checked = false;
        altinn.subscriptions.error = Some("no answer within 10 s".into());
        assert_eq!(
            StatusReport::new(healthy_storage(), altinn).status,
            Verdict::Degraded
        );
    }

    #[test]
    fn an_archive_container_not_created_yet_is_shown_and_malformed_settings_are_broken() {
        // The first archive creates it (the templates do in Azure): nothing to fix yet.
        let mut storage = healthy_storage();
        storage.archive.exists = false;
        storage.archive.writable = None;
        assert_eq!(
            StatusReport::new(storage, healthy_altinn()).status,
            Verdict::Healthy
        );

        let mut altinn = healthy_altinn();
        altinn.not_checked = true;
        altinn.settings_error = Some("setting X: not a URL".into());
        assert_eq!(
            StatusReport::new(healthy_storage(), altinn).status,
            Verdict::Broken
        );
    }

    #[test]
    fn holds_and_unreadable_state_degrade_but_failure_records_alone_do_not() {
        let mut storage = healthy_storage();
        storage.failures.as_mut().unwrap().recent = 12;
        storage
            .failures
            .as_mut()
            .unwrap()
            .by_kind
            .insert("events-inbound permanent".into(), 3);
        assert_eq!(
            StatusReport::new(storage.clone(), healthy_altinn()).status,
            Verdict::Healthy
        );
        storage.holds = Some(2);
        assert_eq!(
            StatusReport::new(storage, healthy_altinn()).status,
            Verdict::Degraded
        );
        let mut storage = healthy_storage();
        storage.unknown.push(Unknown {
            what: "failure records".into(),
            why: "no answer within 10 s".into(),
        });
        assert_eq!(
            StatusReport::new(storage, healthy_altinn()).status,
            Verdict::Degraded
        );
    }
}

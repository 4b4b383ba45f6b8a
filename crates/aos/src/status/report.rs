//! What `aos status` reports and the verdict on it.
//!
//! The verdict is the worst problem found:
//! - **broken** — the system cannot do its work until someone acts: the archive container
//!   unreachable or not writable, `aos-state` or a step queue unreadable, the Maskinporten key
//!   not loadable, the certificate expired;
//! - **degraded** — it works, but something needs a look: a poison queue holds messages, a
//!   permanent failure in the last 24 hours, the certificate expires within 30 days, an
//!   expected subscription missing or not validated, or Altinn could not be asked;
//! - **healthy** — none of these.
//!
//! Queue depths alone (a backlog) are shown, not judged: a burst is normal, and how long is
//! too long depends on the deployment (alert on `aos.queue.depth` for that).

use std::collections::BTreeMap;

use serde::Serialize;

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

/// A blob container: answered, and (for the archive) accepted a write.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ContainerCheck {
    pub container: String,
    pub reachable: bool,
    /// Only the archive is probed for writing; `None` for the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
    /// Why not, in a few redacted words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One queue's depth (the service's approximate count); `None` when it could not be read.
#[derive(Clone, Debug, Serialize)]
pub struct QueueDepth {
    pub name: String,
    pub poison: bool,
    pub messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Failure records (`aos-state/failures/`) written in the last [`FailureSummary::hours`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct FailureSummary {
    pub hours: u32,
    /// `"<queue> <kind>"` → events whose last failure is of that kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Records seen in the window; only the newest ones are read (`storage.rs`).
    pub recent: u64,
    /// Permanent failures among the records read.
    pub permanent: u64,
}

/// One app's catch-up cursor.
#[derive(Clone, Debug, Serialize)]
pub struct CursorStatus {
    pub app: String,
    pub after: Option<String>,
    pub updated: Option<String>,
}

/// The storage side of the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoragePart {
    pub archive: ContainerCheck,
    pub state: ContainerCheck,
    pub queues: Vec<QueueDepth>,
    pub failures: FailureSummary,
    /// Instances held out of reconciliation after a permanent failure.
    pub holds: Option<u64>,
    /// The reconciler's last completed run as it recorded it, if any.
    pub reconcile: Option<serde_json::Value>,
    pub catch_up: Vec<CursorStatus>,
}

/// The certificate of the Maskinporten key.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateStatus {
    pub subject: String,
    pub not_after: String,
    pub days_left: i64,
}

/// The Altinn token's key: `ok`, `not loadable` (with why), or `not checked` (with why).
#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    pub status: &'static str,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One subscription as Altinn lists it (the endpoint without its query).
#[derive(Clone, Debug, Serialize)]
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
pub struct SubscriptionsStatus {
    pub checked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub items: Vec<SubscriptionStatus>,
    /// `ReconcileApps` entries without a validated subscription (source filter `{AppsBaseUrl}{org}/{app}`).
    pub missing: Vec<String>,
}

/// The Altinn side of the report.
#[derive(Clone, Debug, Serialize)]
pub struct AltinnPart {
    pub key: KeyStatus,
    pub subscriptions: SubscriptionsStatus,
    /// The Altinn checks could not run (incomplete settings): said, not judged.
    #[serde(skip)]
    pub not_checked: bool,
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
                "the state container {} cannot be read",
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
    if part.failures.permanent > 0 {
        problems.push(problem(
            Verdict::Degraded,
            format!(
                "{} permanent failure(s) in the last {} hours: see `aos poison list`",
                part.failures.permanent, part.failures.hours
            ),
        ));
    }
    problems
}

fn altinn_problems(part: &AltinnPart) -> Vec<Problem> {
    let mut problems = Vec::new();
    if part.not_checked {
        return problems;
    }
    let key = &part.key;
    if key.status == "not loadable" {
        problems.push(problem(
            Verdict::Broken,
            format!(
                "the Maskinporten key ({}) cannot be loaded: run `aos check-config`",
                key.source
            ),
        ));
    }
    if let Some(cert) = &key.certificate {
        if cert.days_left < 0 {
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
    for sub in subs.items.iter().filter(|s| !s.validated) {
        problems.push(problem(
            Verdict::Degraded,
            format!(
                "subscription {} is not validated: it receives no events \
                 (`aos subscriptions verify`)",
                sub.id
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
            failures: FailureSummary {
                hours: 24,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn healthy_altinn() -> AltinnPart {
        AltinnPart {
            key: KeyStatus {
                status: "ok",
                source: "KeyVault__KeyVaultURI".into(),
                certificate: Some(CertificateStatus {
                    subject: "CN=x".into(),
                    not_after: "2027-06-01T00:00:00Z".into(),
                    days_left: 182,
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
        altinn.key.status = "not checked";
        altinn.subscriptions.checked = false;
        assert_eq!(
            StatusReport::new(healthy_storage(), altinn).status,
            Verdict::Healthy
        );
    }

    #[test]
    fn an_unreadable_step_queue_is_broken_and_an_unvalidated_subscription_degraded() {
        let mut storage = healthy_storage();
        storage.queues[0].messages = None;
        assert_eq!(
            StatusReport::new(storage, healthy_altinn()).status,
            Verdict::Broken
        );
        let mut altinn = healthy_altinn();
        altinn.subscriptions.items.push(SubscriptionStatus {
            id: 7,
            validated: false,
            source: None,
            type_filter: None,
            endpoint: None,
        });
        let report = StatusReport::new(healthy_storage(), altinn);
        assert_eq!(report.status, Verdict::Degraded);
    }
}

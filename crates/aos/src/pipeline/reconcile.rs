//! Reconcile: find completed instances whose events never arrived, and feed each one that is
//! not yet archived and confirmed into the pipeline as a synthetic event.
//!
//! Events are delivered at least once only while the subscription works: a webhook that was
//! down long enough is dead-lettered by Altinn and never re-sent (spec §2.5). So Storage is
//! asked directly (spec §3.6), per configured app (`ReconcileApps`) or org-wide (`Org`):
//!
//! 1. `process.isComplete=true&excludeConfirmedBy={org}` — every completed instance this org
//!    has not confirmed, following `next` to the end;
//! 2. a time-window sweep, `process.isComplete=true&process.ended=gt:{since}` — because the
//!    confirmed filter has missed unconfirmed instances in production
//!    (Altinn/altinn-studio#5482). Its instances carry `completeConfirmations`, so confirmed
//!    ones are recognised from the page itself.
//!
//! Each run first asks every scope for its unconfirmed instances (query 1), and only then
//! sweeps (query 2), so a busy app's sweep can never use up the run before a quieter app was
//! asked at all. Per instance (design §2.6):
//! - confirmed by the org: done, whatever this archive holds — the previous system (or this
//!   one) archived it and told Altinn so; it is never queued and nothing is downloaded;
//! - held after a permanent failure ([`crate::holds`]): not queued until an operator replays it
//!   or the hold is older than `PermanentFailureHoldDays`; counted as held;
//! - otherwise an `app.instance.process.completed` event for the inbound queue. The pipeline
//!   is idempotent, so an instance whose real event is in flight at the same time is archived
//!   once and confirmed once; the duplicate is cheap.
//!
//! Identity comes from the instance JSON (`id`, `appId`) and is validated like an event
//! source before anything is built from it; an instance that fails is counted as failed with
//! the reason and never used as a path.
//!
//! Bounds: a run queues at most [`ReconcileOptions::max_instances`] instances — the cap counts
//! only instances queued, never those found done — and reads at most
//! [`ReconcileOptions::max_pages`] pages, so a timer invocation stays inside the function
//! timeout whatever the sweep window holds; the rest is found by the next run. In the first
//! phase each scope may use at most its share of both, so one app with a backlog (or with
//! pages of held or failing instances) cannot starve the others; both phases start at a scope
//! chosen at random. The shares are per scope: org-wide (no `ReconcileApps`) is one scope.

use std::collections::HashSet;
use std::fmt;

use anyhow::anyhow;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::altinn::model::Instance;
use crate::config::DEFAULT_EVENT_TYPE;
use crate::domain::{AppName, CloudEvent, InstanceRef, OrgName, PartyId, parse_guid};
use crate::holds::HeldInstances;

use super::Pipeline;
use super::error::StepError;

/// The attribute that marks a synthetic event made here; every step but `process` ignores it.
pub use crate::domain::RECONCILED_ATTRIBUTE;

/// How far back the time-window sweep looks by default.
pub const DEFAULT_WINDOW: Duration = Duration::days(7);

/// Instances queued per run at most (timer and CLI): at most 5000 queue messages from one
/// invocation — minutes, not the 10-minute function timeout.
pub const MAX_INSTANCES_PER_RUN: usize = 5000;

/// Query pages read per run at most (100 instances each): deciding an instance costs no
/// request, so this bounds the run's time when the sweep window holds many done instances.
pub const MAX_PAGES_PER_RUN: usize = 1000;

/// Reasons kept in a report; the count of failures is always exact.
const MAX_REASONS: usize = 100;

/// Where the last completed run is recorded in `aos-state` (`aos status` shows it): written by
/// the `EventsReconciler` timer and by `aos reconcile` (not by a dry run), so an operator sees
/// when the safety net last ran and what it found.
pub const LAST_RUN_BLOB: &str = "reconcile/last-run.json";

/// The longest recording the last run may take.
const LAST_RUN_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The record at [`LAST_RUN_BLOB`]. `queued` is what the run handed on: `aos reconcile` queued
/// it; the timer returned it as its output binding, which the host writes after the invocation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// When the run ended (RFC 3339).
    pub at: String,
    /// `EventsReconciler` or `aos reconcile`.
    pub by: String,
    #[serde(flatten)]
    pub summary: Summary,
    /// Why the run stopped before the end, if it did.
    pub stopped: Vec<String>,
}

/// What one run looks at.
#[derive(Clone, Debug)]
pub struct ReconcileOptions {
    /// Start of the time-window sweep (`process.ended=gt:{since}`).
    pub since: OffsetDateTime,
    /// Queue at most this many instances.
    pub max_instances: usize,
    /// Read at most this many query pages.
    pub max_pages: usize,
}

impl Default for ReconcileOptions {
    /// The last [`DEFAULT_WINDOW`], capped at [`MAX_INSTANCES_PER_RUN`].
    fn default() -> Self {
        ReconcileOptions {
            since: OffsetDateTime::now_utc() - DEFAULT_WINDOW,
            max_instances: MAX_INSTANCES_PER_RUN,
            max_pages: MAX_PAGES_PER_RUN,
        }
    }
}

/// What a run found. The adapter queues `events` (or not, for a dry run) and reports the
/// [`Summary`].
#[derive(Debug, Default)]
pub struct Reconciliation {
    /// Distinct instances seen across both queries.
    pub found: usize,
    /// Instances the org has confirmed: nothing to do.
    pub already_done: usize,
    /// Instances held after a permanent failure (`crate::holds`): not queued.
    pub held: usize,
    /// One synthetic event per instance to feed into the pipeline.
    pub events: Vec<CloudEvent>,
    /// How many instances or queries failed.
    pub failed: usize,
    /// Why (the first `MAX_REASONS`).
    pub reasons: Vec<String>,
    /// Queries that failed (also counted in `failed`).
    pub failed_queries: usize,
    /// Failed queries whose Altinn could not be reached at all (no answer, not a refusal).
    pub unreachable_queries: usize,
    /// Queries started.
    pub queries: usize,
    /// Why the run (or one app's query) stopped before the end — the instance cap, an app's
    /// share of it, the page bound; empty when everything was read. The next run continues.
    pub stopped: Vec<String>,
    /// Pages read so far.
    pages: usize,
}

impl Reconciliation {
    /// The run, or one query of it, stopped at a bound: said once in the progress and kept.
    fn stop(&mut self, progress: &mut (dyn FnMut(String) + Send), why: String) {
        progress(why.clone());
        self.stopped.push(why);
    }

    fn fail(&mut self, reason: String) {
        tracing::warn!(reason = %reason, "reconcile: instance or query failed");
        self.failed += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason);
        }
    }

    /// The summary once `queued` events have been handed to the queue.
    pub fn summary(&self, queued: usize) -> Summary {
        Summary {
            found: self.found,
            already_done: self.already_done,
            queued,
            held: self.held,
            failed: self.failed,
        }
    }

    /// Every query failed: nothing was learned, so the run itself failed.
    pub fn all_queries_failed(&self) -> bool {
        self.queries > 0 && self.failed_queries == self.queries
    }

    /// Every query failed because Altinn could not be reached: try again later, unchanged.
    pub fn altinn_unreachable(&self) -> bool {
        self.all_queries_failed() && self.unreachable_queries == self.failed_queries
    }
}

/// The line every run ends with (and, as JSON, `aos reconcile --json`'s `summary`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub found: usize,
    #[serde(rename = "alreadyConfirmed")]
    pub already_done: usize,
    pub queued: usize,
    pub held: usize,
    pub failed: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reconcile summary: found {}, already confirmed {}, queued {}, held {}",
            self.found, self.already_done, self.queued, self.held
        )?;
        if self.held > 0 {
            f.write_str(" (permanent failures, see aos poison list)")?;
        }
        write!(f, ", failed {}", self.failed)
    }
}

impl Pipeline {
    /// Records a completed run at [`LAST_RUN_BLOB`]: when, by whom (`by`), its counts and why
    /// it stopped early. Best effort, like a failure record: storage trouble here must not fail
    /// a run that did its work, so it is only logged.
    ///
    /// Bounded to [`LAST_RUN_WRITE_TIMEOUT`]: under the Functions host it runs inside the
    /// timer's invocation, after the work, and storage retries must not eat its time.
    pub async fn record_reconcile_run(&self, by: &str, summary: &Summary, stopped: &[String]) {
        let record = LastRun {
            at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            by: by.to_string(),
            summary: *summary,
            stopped: stopped.to_vec(),
        };
        let info = crate::archive::BlobInfo {
            content_type: "application/json".into(),
            metadata: Default::default(),
        };
        let bytes = bytes::Bytes::from(serde_json::to_vec(&record).expect("a run serialises"));
        let write = self.failures.state().put(LAST_RUN_BLOB, bytes, &info);
        match tokio::time::timeout(LAST_RUN_WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not record the reconcile run in aos-state")
            }
            Err(_) => tracing::warn!("recording the reconcile run in aos-state took too long"),
        }
    }
}

/// What one query asks for: one app, or every app of an org.
#[derive(Clone, Debug)]
enum Scope {
    App(OrgName, AppName),
    Org(OrgName),
}

impl Scope {
    fn org(&self) -> &OrgName {
        match self {
            Scope::App(org, _) | Scope::Org(org) => org,
        }
    }

    fn param(&self) -> (&'static str, String) {
        match self {
            Scope::App(org, app) => ("appId", format!("{}/{}", org.as_str(), app.as_str())),
            Scope::Org(org) => ("org", org.as_str().to_string()),
        }
    }

    fn contains(&self, instance: &InstanceRef) -> bool {
        match self {
            Scope::App(org, app) => instance.org == *org && instance.app == *app,
            Scope::Org(org) => instance.org == *org,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, value) = self.param();
        write!(f, "{name}={value}")
    }
}

/// What to do with one instance from a query.
enum Verdict {
    Queue(InstanceRef),
    AlreadyDone,
    Held,
}

/// The two queries, in the order a run makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// `excludeConfirmedBy={org}`: every completed instance the org has not confirmed.
    Unconfirmed,
    /// `process.ended=gt:{since}`: the time-window sweep.
    Sweep,
}

impl Pipeline {
    /// Runs the unconfirmed query for every scope, then the sweep for every scope, and decides
    /// per instance. `progress` receives a line per page, for CLI progress and the invocation
    /// log. Fails only when reconciliation cannot start (no org to query); failed queries and
    /// instances are counted in the result.
    pub async fn reconcile(
        &self,
        options: &ReconcileOptions,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<Reconciliation, StepError> {
        crate::metrics::timed("reconcile", self.reconcile_run(options, progress)).await
    }

    async fn reconcile_run(
        &self,
        options: &ReconcileOptions,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<Reconciliation, StepError> {
        let scopes = self.reconcile_scopes()?;
        // UTC, so the value needs no `+` in the query string and reads the same in every log.
        let since = options
            .since
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|e| StepError::permanent(e).context("--since"))?;
        let mut run = Reconciliation::default();
        let held = match self.holds.active(self.settings.failure_hold).await {
            Ok(held) => held,
            Err(e) => {
                // Without the holds the run still works; held instances get one more round.
                run.fail(format!("reading the holds in aos-state: {e}"));
                HeldInstances::default()
            }
        };
        let mut seen = HashSet::new();
        // In the first phase each scope gets its share of the instance cap and of the pages;
        // the sweep gets what is left. Both start at a rotating scope.
        let scopes_count = scopes.len().max(1);
        let share = options.max_instances.div_ceil(scopes_count);
        let page_share = options.max_pages.div_ceil(scopes_count).max(1);
        let start = rotation(scopes.len());
        for phase in [Phase::Unconfirmed, Phase::Sweep] {
            for i in 0..scopes.len() {
                let scope = &scopes[(start + i) % scopes.len()];
                let org = scope.org().as_str().to_string();
                let (label, filter, limit, pages) = match phase {
                    Phase::Unconfirmed => (
                        "unconfirmed",
                        ("excludeConfirmedBy", org),
                        share,
                        page_share,
                    ),
                    Phase::Sweep => (
                        "ended since",
                        ("process.ended", format!("gt:{since}")),
                        options.max_instances,
                        options.max_pages,
                    ),
                };
                let params = [scope.param(), ("process.isComplete", "true".into()), filter];
                let query = Query {
                    scope,
                    params: &params,
                    name: format!("{label} ({scope})"),
                    limit,
                    pages,
                };
                run.queries += 1;
                if !self
                    .reconcile_query(&query, options, &held, &mut run, &mut seen, progress)
                    .await
                {
                    return Ok(run);
                }
            }
        }
        Ok(run)
    }

    /// Follows one query to its last page, queueing at most `query.limit` of its instances.
    /// Returns false when the run must stop (the instance cap or the page bound was reached).
    async fn reconcile_query(
        &self,
        query: &Query<'_>,
        options: &ReconcileOptions,
        held: &HeldInstances,
        run: &mut Reconciliation,
        seen: &mut HashSet<String>,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> bool {
        let name = &query.name;
        let mut continuation: Option<String> = None;
        let mut pages = 0usize;
        let mut queued_here = 0usize;
        loop {
            if run.pages >= options.max_pages {
                run.stop(
                    progress,
                    format!(
                        "stopped after {} query pages (the limit per run); the next run continues",
                        options.max_pages
                    ),
                );
                return false;
            }
            if pages >= query.pages {
                run.stop(
                    progress,
                    format!(
                        "query {name}: read {pages} pages, this app's share of the run; the next run continues"
                    ),
                );
                return true;
            }
            let page = match self
                .altinn
                .query_instances(query.params, continuation.as_deref())
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    run.failed_queries += 1;
                    if crate::cause::is_unreachable(&e) {
                        run.unreachable_queries += 1;
                    }
                    run.fail(format!(
                        "query {name} page {}: {}",
                        pages + 1,
                        crate::cause::line(&e)
                    ));
                    return true;
                }
            };
            pages += 1;
            run.pages += 1;
            for raw in &page.instances {
                if let Some(key) = instance_key(raw)
                    && !seen.insert(key)
                {
                    continue;
                }
                run.found += 1;
                match self.examine(query.scope, raw, held) {
                    Ok(Verdict::Queue(instance)) => {
                        run.events
                            .push(synthetic_event(&instance, &self.settings.apps_base_url));
                        queued_here += 1;
                    }
                    Ok(Verdict::AlreadyDone) => run.already_done += 1,
                    Ok(Verdict::Held) => run.held += 1,
                    Err(reason) => run.fail(reason),
                }
                if run.events.len() >= options.max_instances {
                    run.stop(
                        progress,
                        format!(
                            "stopped after queueing {} instances (the limit per run); the next run continues",
                            options.max_instances
                        ),
                    );
                    return false;
                }
                if queued_here >= query.limit {
                    run.stop(
                        progress,
                        format!(
                            "query {name}: queued {queued_here}, this app's share of the run; the next run continues"
                        ),
                    );
                    return true;
                }
            }
            progress(format!(
                "query {name}: page {pages}, {} instances; so far found {}, to queue {}, already confirmed {}, held {}, failed {}",
                page.instances.len(),
                run.found,
                run.events.len(),
                run.already_done,
                run.held,
                run.failed
            ));
            match page.continuation {
                // A server repeating its token would loop forever; the page bound ends that
                // too, but a repeated token is plainly wrong.
                Some(next) if continuation.as_deref() == Some(next.as_str()) => {
                    run.failed_queries += 1;
                    run.fail(format!(
                        "query {name}: Storage repeated its continuation token"
                    ));
                    return true;
                }
                Some(next) => continuation = Some(next),
                None => return true,
            }
        }
    }

    /// Which instance this is, and whether it needs the pipeline. Costs no request: the query
    /// page carries `completeConfirmations`, and the holds were listed once for the run.
    fn examine(&self, scope: &Scope, raw: &Value, held: &HeldInstances) -> Result<Verdict, String> {
        let instance = instance_ref(raw)?;
        if !scope.contains(&instance) {
            return Err(format!(
                "query {scope} returned instance {instance} of another app or org"
            ));
        }
        let parsed: Instance = serde_json::from_value(raw.clone())
            .map_err(|e| format!("instance {instance}: unreadable instance JSON: {e}"))?;
        if !parsed.process_ended() {
            return Err(format!(
                "instance {instance}: returned for process.isComplete=true but has no process.ended"
            ));
        }
        if parsed.confirmed_by(instance.org.as_str()) {
            return Ok(Verdict::AlreadyDone);
        }
        if held.contains(&instance) {
            return Ok(Verdict::Held);
        }
        Ok(Verdict::Queue(instance))
    }

    /// `ReconcileApps` when set; otherwise every app of `Org`.
    fn reconcile_scopes(&self) -> Result<Vec<Scope>, StepError> {
        let settings = &self.settings;
        if !settings.reconcile_apps.is_empty() {
            return Ok(settings
                .reconcile_apps
                .iter()
                .map(|(org, app)| Scope::App(org.clone(), app.clone()))
                .collect());
        }
        settings
            .org
            .clone()
            .map(|org| vec![Scope::Org(org)])
            .ok_or_else(|| {
                StepError::permanent(anyhow!(
                    "setting AltinnApplicationOwnerSystemSettings__Org: is required for reconciliation \
                     when AltinnApplicationOwnerSystemSettings__ReconcileApps is empty and the \
                     AppsBaseUrl host does not name the org"
                ))
            })
    }
}

/// One query of a run.
struct Query<'a> {
    scope: &'a Scope,
    params: &'a [(&'a str, String)],
    name: String,
    /// Instances this query may queue.
    limit: usize,
    /// Pages this query may read.
    pages: usize,
}

/// Where this run starts among `scopes` scopes: chosen at random, so when a bound cuts runs
/// short, no app is always last, whatever the schedule (the timer's 15 minutes, an hourly CLI
/// run). Stateless, so two replicas or a CLI run need nothing shared.
fn rotation(scopes: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % scopes.max(1) as u128) as usize
}

/// The dedupe key of a raw instance: its `id` text, when it has one.
fn instance_key(raw: &Value) -> Option<String> {
    raw.get("id").and_then(Value::as_str).map(str::to_string)
}

/// The validated identity of a queried instance: `id` = `{partyId}/{instanceGuid}` and
/// `appId` = `{org}/{app}`, each segment checked by the same rules as an event source.
pub fn instance_ref(raw: &Value) -> Result<InstanceRef, String> {
    let text = |name: &str| raw.get(name).and_then(Value::as_str);
    let id = text("id").ok_or("queried instance without an `id`")?;
    let shown = format!("{:?}", id.chars().take(120).collect::<String>());
    let bad = |reason: String| format!("instance {shown}: {reason}");
    let app_id = text("appId").ok_or_else(|| bad("no `appId`".into()))?;
    let (party, guid) = id
        .split_once('/')
        .ok_or_else(|| bad("`id` is not {partyId}/{instanceGuid}".into()))?;
    let (org, app) = app_id
        .split_once('/')
        .ok_or_else(|| bad("`appId` is not {org}/{app}".into()))?;
    Ok(InstanceRef {
        org: OrgName::parse(org).map_err(|e| bad(format!("org in appId {e}")))?,
        app: AppName::parse(app).map_err(|e| bad(format!("app in appId {e}")))?,
        party_id: PartyId::parse(party).map_err(bad)?,
        instance_guid: parse_guid(guid).map_err(bad)?,
    })
}

/// The event the webhook would have queued had Altinn's push arrived, marked with
/// [`RECONCILED_ATTRIBUTE`].
pub fn synthetic_event(instance: &InstanceRef, apps: &crate::domain::BaseUrl) -> CloudEvent {
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let value = json!({
        "id": Uuid::new_v4().to_string(),
        "specversion": "1.0",
        "type": DEFAULT_EVENT_TYPE,
        "source": instance.source_url(apps),
        "time": now,
        RECONCILED_ATTRIBUTE: "true",
    });
    // The four required attributes are set above, so this cannot fail.
    CloudEvent::from_value(value).unwrap_or_else(|_| unreachable!("required attributes are set"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BaseUrl;

    const GUID: &str = "6b3323c8-7baf-4612-b8a6-5eac407f4d0c";

    #[test]
    fn identity_comes_from_id_and_app_id_and_is_validated() {
        let ok = instance_ref(&json!({"id": format!("50019855/{GUID}"), "appId": "ttd/apps-test"}))
            .unwrap();
        assert_eq!(
            ok.to_string(),
            format!("ttd/apps-test/instances/50019855/{GUID}")
        );
        for (raw, fragment) in [
            (json!({"appId": "ttd/a1"}), "without an `id`"),
            (json!({"id": format!("1/{GUID}")}), "no `appId`"),
            (json!({"id": GUID, "appId": "ttd/a1"}), "partyId"),
            (
                json!({"id": format!("1/{GUID}"), "appId": "ttd"}),
                "{org}/{app}",
            ),
            (
                json!({"id": format!("1/{GUID}"), "appId": "ttd/../x"}),
                "app in appId",
            ),
            (
                json!({"id": format!("0/{GUID}"), "appId": "ttd/a1"}),
                "out of range",
            ),
            (json!({"id": "1/..%2f", "appId": "ttd/a1"}), "not a GUID"),
            (
                json!({"id": format!("1/{GUID}"), "appId": "TTD/a1"}),
                "org in appId",
            ),
        ] {
            let err = instance_ref(&raw).unwrap_err();
            assert!(err.contains(fragment), "{raw}: {err}");
        }
    }

    #[test]
    fn synthetic_events_name_the_instance_on_the_app_host_and_say_where_they_come_from() {
        let apps = BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap();
        let instance =
            instance_ref(&json!({"id": format!("50019855/{GUID}"), "appId": "ttd/apps-test"}))
                .unwrap();
        let event = synthetic_event(&instance, &apps);
        assert_eq!(event.event_type(), "app.instance.process.completed");
        assert_eq!(event.instance(&apps).unwrap(), instance);
        assert_eq!(event.to_json()[RECONCILED_ATTRIBUTE], "true");
        assert_eq!(event.to_json()["specversion"], "1.0");
        assert!(Uuid::try_parse(event.id()).is_ok());
        assert_ne!(synthetic_event(&instance, &apps).id(), event.id());
    }

    #[test]
    fn the_summary_line_names_every_count() {
        let run = Reconciliation {
            found: 5,
            already_done: 2,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(
            run.summary(2).to_string(),
            "reconcile summary: found 5, already confirmed 2, queued 2, held 0, failed 1"
        );
        let held = Reconciliation {
            found: 3,
            held: 3,
            ..Default::default()
        };
        assert_eq!(
            held.summary(0).to_string(),
            "reconcile summary: found 3, already confirmed 0, queued 0, held 3 (permanent failures, see aos poison list), failed 0"
        );
    }
}

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
//! An instance already confirmed by the org is skipped when its manifest is in the archive
//! (archived and confirmed); everything else becomes an `app.instance.process.completed` event
//! for the inbound queue. The pipeline is idempotent, so an instance whose real event is in
//! flight at the same time is archived once and confirmed once; the duplicate is cheap.
//!
//! Identity comes from the instance JSON (`id`, `appId`) and is validated like an event
//! source before anything is built from it; an instance that fails is counted as failed with
//! the reason and never used as a path. A run examines at most
//! [`ReconcileOptions::max_instances`] distinct instances, so a timer invocation stays well
//! inside the function timeout; the rest is found by the next run.

use std::collections::HashSet;
use std::fmt;

use anyhow::anyhow;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::altinn::model::Instance;
use crate::archive::InstancePaths;
use crate::config::DEFAULT_EVENT_TYPE;
use crate::domain::{AppName, CloudEvent, InstanceRef, OrgName, PartyId, parse_guid};

use super::Pipeline;
use super::error::StepError;

/// The CloudEvent extension attribute that marks a synthetic event made by the reconciler
/// (value `"true"`). CloudEvents allows producers to add extension attributes, and the queue
/// message format allows this product to add its own (design §2.4); every step ignores it, so
/// it only tells a human (or `aos poison list`) where a message came from.
pub const RECONCILED_ATTRIBUTE: &str = "aosreconciled";

/// How far back the time-window sweep looks by default.
pub const DEFAULT_WINDOW: Duration = Duration::days(7);

/// Distinct instances examined per run at most (timer and CLI). At Storage's 100 instances a
/// page that is 50 pages, and at most 5000 queue messages from one invocation — minutes, not
/// the 10-minute function timeout.
pub const MAX_INSTANCES_PER_RUN: usize = 5000;

/// Reasons kept in a report; the count of failures is always exact.
const MAX_REASONS: usize = 100;

/// What one run looks at.
#[derive(Clone, Debug)]
pub struct ReconcileOptions {
    /// Start of the time-window sweep (`process.ended=gt:{since}`).
    pub since: OffsetDateTime,
    /// Stop after this many distinct instances.
    pub max_instances: usize,
}

impl Default for ReconcileOptions {
    /// The last [`DEFAULT_WINDOW`], capped at [`MAX_INSTANCES_PER_RUN`].
    fn default() -> Self {
        ReconcileOptions {
            since: OffsetDateTime::now_utc() - DEFAULT_WINDOW,
            max_instances: MAX_INSTANCES_PER_RUN,
        }
    }
}

/// What a run found. The adapter queues `events` (or not, for a dry run) and reports the
/// [`Summary`].
#[derive(Debug, Default)]
pub struct Reconciliation {
    /// Distinct instances seen across both queries.
    pub found: usize,
    /// Instances archived (manifest present) and confirmed: nothing to do.
    pub already_done: usize,
    /// One synthetic event per instance to feed into the pipeline.
    pub events: Vec<CloudEvent>,
    /// How many instances or queries failed.
    pub failed: usize,
    /// Why (the first `MAX_REASONS`).
    pub reasons: Vec<String>,
    /// Queries that failed (also counted in `failed`).
    pub failed_queries: usize,
    /// Queries started.
    pub queries: usize,
    /// The run stopped at `max_instances`; the next run continues.
    pub truncated: bool,
}

impl Reconciliation {
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
            failed: self.failed,
        }
    }

    /// Every query failed: nothing was learned, so the run itself failed.
    pub fn all_queries_failed(&self) -> bool {
        self.queries > 0 && self.failed_queries == self.queries
    }
}

/// The line every run ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub found: usize,
    pub already_done: usize,
    pub queued: usize,
    pub failed: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reconcile summary: found {}, already archived and confirmed {}, queued {}, failed {}",
            self.found, self.already_done, self.queued, self.failed
        )
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
}

impl Pipeline {
    /// Runs both queries for every scope and decides per instance. `progress` receives a line
    /// per page, for CLI progress and the invocation log. Fails only when reconciliation cannot
    /// start (no org to query); failed queries and instances are counted in the result.
    pub async fn reconcile(
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
        let mut seen = HashSet::new();
        'scopes: for scope in &scopes {
            let org = scope.org().as_str().to_string();
            let queries = [
                ("unconfirmed", ("excludeConfirmedBy", org)),
                ("ended since", ("process.ended", format!("gt:{since}"))),
            ];
            for (label, filter) in queries {
                let params = [scope.param(), ("process.isComplete", "true".into()), filter];
                let name = format!("{label} ({scope})");
                run.queries += 1;
                if !self
                    .reconcile_query(
                        scope, &params, &name, options, &mut run, &mut seen, progress,
                    )
                    .await
                {
                    break 'scopes;
                }
            }
        }
        Ok(run)
    }

    /// Follows one query to its last page. Returns false when the instance cap was reached.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile_query(
        &self,
        scope: &Scope,
        params: &[(&str, String)],
        name: &str,
        options: &ReconcileOptions,
        run: &mut Reconciliation,
        seen: &mut HashSet<String>,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> bool {
        let mut continuation: Option<String> = None;
        let mut pages = 0usize;
        loop {
            let page = match self
                .altinn
                .query_instances(params, continuation.as_deref())
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    run.failed_queries += 1;
                    run.fail(format!("query {name} page {}: {e}", pages + 1));
                    return true;
                }
            };
            pages += 1;
            for raw in &page.instances {
                if let Some(key) = instance_key(raw)
                    && !seen.insert(key)
                {
                    continue;
                }
                if run.found >= options.max_instances {
                    run.truncated = true;
                    progress(format!(
                        "stopped after {} instances (the limit per run); the next run continues",
                        options.max_instances
                    ));
                    return false;
                }
                run.found += 1;
                match self.examine(scope, raw).await {
                    Ok(Verdict::Queue(instance)) => run
                        .events
                        .push(synthetic_event(&instance, &self.settings.apps_base_url)),
                    Ok(Verdict::AlreadyDone) => run.already_done += 1,
                    Err(reason) => run.fail(reason),
                }
            }
            progress(format!(
                "query {name}: page {pages}, {} instances; so far found {}, to queue {}, already done {}, failed {}",
                page.instances.len(),
                run.found,
                run.events.len(),
                run.already_done,
                run.failed
            ));
            match page.continuation {
                // A server repeating its token would loop forever; the cap ends that too, but a
                // repeated token is plainly wrong.
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

    /// Which instance this is, and whether it needs the pipeline.
    async fn examine(&self, scope: &Scope, raw: &Value) -> Result<Verdict, String> {
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
        if !parsed.confirmed_by(instance.org.as_str()) {
            return Ok(Verdict::Queue(instance));
        }
        match self.archive.manifest(&InstancePaths::new(&instance)).await {
            Ok(Some(_)) => Ok(Verdict::AlreadyDone),
            // Confirmed (perhaps by another system) but not in this archive: archive it.
            Ok(None) => Ok(Verdict::Queue(instance)),
            Err(e) => Err(format!("instance {instance}: reading the manifest: {e}")),
        }
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
        "source": instance.source_url(apps).as_str(),
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
            "reconcile summary: found 5, already archived and confirmed 2, queued 2, failed 1"
        );
    }
}

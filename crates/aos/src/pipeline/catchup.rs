//! Catch-up: read each configured app's events from the Altinn Events pull API
//! (`GET {platform}events/api/v1/app/{org}/{app}?after=`, spec §2.7) and queue those the webhook
//! would have queued, for event-level completeness when pushes were dead-lettered or swallowed.
//!
//! Per app (`ReconcileApps`; the pull API has no org-wide form, so catch-up requires the list):
//! 1. read the cursor `events-cursor/{org}/{app}.json` in the `aos-state` container (the last
//!    event id and its time); without one, start `from` [`CatchUpOptions::first_from`]
//!    (`EventsCatchUpFrom`, default one day before the run);
//! 2. pull pages (`after={cursor}`, the configured event types, [`CatchUpOptions::page_size`]);
//! 3. judge each event exactly as the webhook judges a pushed one ([`receive`]: a pulled event
//!    is as untrusted as a pushed one, so a source on another host is refused and never
//!    fetched), and also refuse one naming another app; skip one whose instance is held after
//!    a permanent failure (`crate::holds`) or already archived (manifest present: its pushed
//!    event got there first);
//! 4. send the rest to the inbound queue (marked with [`CAUGHT_UP_ATTRIBUTE`]), and only when
//!    every one of the page's events is stored, move the cursor to the page's end — written
//!    with an ETag condition, so two concurrent runs can never move it backwards (the loser
//!    stops). A failure leaves the cursor where it was: the next run pulls the page again, and
//!    the duplicates are harmless because the pipeline is idempotent.
//!
//! The cursor follows the `after` value of the `next` header (or the page's last id); the URL
//! is always rebuilt from the configured platform base, so the token goes nowhere else.
//!
//! Retention: Altinn keeps events for 90 days, and an `after` id it no longer knows restarts the
//! feed from the beginning. A cursor older than that, or a first page older than the cursor,
//! is reported as a warning (events may have been missed; `aos reconcile --since` covers them).

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::altinn::client::{EventPage, PullStart};
use crate::archive::{Archive, BlobInfo, InstancePaths};
use crate::config::CatchUpSettings;
use crate::domain::{AppName, CloudEvent, OrgName};
use crate::holds::HeldInstances;

use super::Pipeline;
use super::receive::{ReceiveOutcome, receive};

/// The attribute marking an event that came from the pull API.
pub use crate::domain::CAUGHT_UP_ATTRIBUTE;
/// Where the cursors live in `aos-state`.
pub const CURSOR_PREFIX: &str = "events-cursor";
/// Without a cursor (and without `EventsCatchUpFrom`) the first run looks back this far.
pub const DEFAULT_FIRST_WINDOW: Duration = Duration::days(1);
/// Events requested per page.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Events examined per run at most (all apps together); the next run continues from the cursor.
pub const MAX_EVENTS_PER_RUN: usize = 5000;
/// Altinn deletes events older than this (spec §2.7).
pub const RETENTION: Duration = Duration::days(90);
/// How much older than the cursor a first event may be before the feed is taken to have
/// restarted (producers set `time`; a little disorder is normal).
const RESTART_SLACK: Duration = Duration::hours(1);
/// A pulled event larger than this is refused: base64-encoded it would not fit in a storage
/// queue message (64 KiB), and an event that can never be queued must not hold the cursor
/// back forever. Altinn's events are well under 1 KiB.
pub const MAX_PULLED_EVENT_BYTES: usize = crate::queue::MAX_MESSAGE_TEXT_BYTES;
/// Reasons kept per app; counts are always exact.
const MAX_REASONS: usize = 100;

/// What one run does.
#[derive(Clone, Debug)]
pub struct CatchUpOptions {
    /// Where an app without a cursor starts.
    pub first_from: OffsetDateTime,
    pub page_size: usize,
    pub max_events: usize,
}

impl CatchUpOptions {
    /// `EventsCatchUpFrom`, else one day ago; [`DEFAULT_PAGE_SIZE`], [`MAX_EVENTS_PER_RUN`].
    pub fn from_settings(settings: &CatchUpSettings) -> Self {
        CatchUpOptions {
            first_from: settings
                .first_from
                .unwrap_or_else(|| OffsetDateTime::now_utc() - DEFAULT_FIRST_WINDOW),
            page_size: DEFAULT_PAGE_SIZE,
            max_events: MAX_EVENTS_PER_RUN,
        }
    }
}

/// The stored cursor of one app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    /// The id of the last event taken (the pull API's `after`).
    pub after: String,
    /// That event's `time`, when it had one.
    #[serde(default)]
    pub time: Option<String>,
    /// When the cursor was written.
    #[serde(default)]
    pub updated: Option<String>,
}

/// Where accepted events go: the inbound queue, or nothing (dry run).
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// Returns once the event is durably stored.
    async fn send(&self, event: &CloudEvent) -> anyhow::Result<()>;
}

#[async_trait::async_trait]
impl EventSink for crate::queue::Queue {
    async fn send(&self, event: &CloudEvent) -> anyhow::Result<()> {
        use anyhow::Context as _;
        crate::queue::Queue::send(self, &event.message_text())
            .await
            .with_context(|| format!("queue {}", self.name()))
    }
}

/// What happened to one app (as JSON: `aos catch-up --json`'s `apps`).
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppReport {
    /// `org/app`.
    pub app: String,
    pub cursor_before: Option<String>,
    pub cursor_after: Option<String>,
    pub pages: usize,
    pub seen: usize,
    pub queued: usize,
    /// Skipped events by reason (`type not processed`, `refused`, `another app`,
    /// `already archived`).
    pub skipped: BTreeMap<&'static str, usize>,
    /// Why events were refused (the first `MAX_REASONS`).
    pub reasons: Vec<String>,
    /// Why the app stopped early (pull or queue failure, cursor write failure).
    pub failed: Option<String>,
    /// Retention warnings.
    pub warnings: Vec<String>,
}

impl AppReport {
    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    fn refuse(&mut self, reason: &'static str, detail: String) {
        tracing::warn!(app = %self.app, reason = %detail, "catch-up: pulled event refused");
        self.skip(reason);
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(detail);
        }
    }

    fn warn(&mut self, warning: String) {
        tracing::warn!(app = %self.app, "{warning}");
        self.warnings.push(warning);
    }

    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

impl fmt::Display for AppReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cursor = |c: &Option<String>| c.clone().unwrap_or_else(|| "(none)".into());
        write!(
            f,
            "catch-up {}: cursor {} -> {}; pages {}, events seen {}, queued {}, skipped {}",
            self.app,
            cursor(&self.cursor_before),
            cursor(&self.cursor_after),
            self.pages,
            self.seen,
            self.queued,
            self.skipped_total()
        )?;
        if !self.skipped.is_empty() {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        if let Some(failed) = &self.failed {
            write!(f, "; failed: {failed}")?;
        }
        Ok(())
    }
}

/// A whole run.
#[derive(Debug, Default)]
pub struct CatchUp {
    pub apps: Vec<AppReport>,
    /// The run stopped at [`CatchUpOptions::max_events`]; the next one continues.
    pub truncated: bool,
}

impl CatchUp {
    pub fn failed(&self) -> usize {
        self.apps.iter().filter(|a| a.failed.is_some()).count()
    }

    pub fn queued(&self) -> usize {
        self.apps.iter().map(|a| a.queued).sum()
    }

    /// Every app failed: the run achieved nothing.
    pub fn all_failed(&self) -> bool {
        !self.apps.is_empty() && self.failed() == self.apps.len()
    }

    /// The summary line's counts as JSON (`aos catch-up --json`'s `summary`).
    pub fn summary_json(&self) -> serde_json::Value {
        let sum = |field: fn(&AppReport) -> usize| self.apps.iter().map(field).sum::<usize>();
        serde_json::json!({
            "apps": self.apps.len(),
            "pages": sum(|a| a.pages),
            "seen": sum(|a| a.seen),
            "queued": sum(|a| a.queued),
            "skipped": sum(AppReport::skipped_total),
            "failed": self.failed(),
            "truncated": self.truncated,
        })
    }
}

impl fmt::Display for CatchUp {
    /// `catch-up summary: apps 2, pages 3, events seen 12, queued 8, skipped 4, failed 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sum = |field: fn(&AppReport) -> usize| self.apps.iter().map(field).sum::<usize>();
        write!(
            f,
            "catch-up summary: apps {}, pages {}, events seen {}, queued {}, skipped {}, failed {}",
            self.apps.len(),
            sum(|a| a.pages),
            sum(|a| a.seen),
            sum(|a| a.queued),
            sum(AppReport::skipped_total),
            self.failed()
        )
    }
}

/// What to do with one pulled event.
enum Verdict {
    Queue(CloudEvent),
    Skip(&'static str),
    Refuse(&'static str, String),
}

impl Pipeline {
    /// Catches up every app of `ReconcileApps`. `sink` is `None` for a dry run: nothing is
    /// queued and no cursor moves. `progress` gets one line per page.
    pub async fn catch_up(
        &self,
        options: &CatchUpOptions,
        sink: Option<&dyn EventSink>,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<CatchUp, String> {
        crate::metrics::timed("catchup", self.catch_up_run(options, sink, progress)).await
    }

    async fn catch_up_run(
        &self,
        options: &CatchUpOptions,
        sink: Option<&dyn EventSink>,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<CatchUp, String> {
        if self.settings.reconcile_apps.is_empty() {
            return Err(
                "setting AltinnApplicationOwnerSystemSettings__ReconcileApps: is required for \
                 catch-up (the Events pull API is per app)"
                    .into(),
            );
        }
        let cursors = Cursors::new(self.failures.state().clone());
        let held = match self.holds.active(self.settings.failure_hold).await {
            Ok(held) => held,
            Err(e) => {
                // Without the holds catch-up still works; held instances get one more round.
                progress(format!(
                    "catch-up: reading the holds in aos-state failed: {e}"
                ));
                HeldInstances::default()
            }
        };
        let mut run = CatchUp::default();
        let mut budget = options.max_events;
        for (org, app) in &self.settings.reconcile_apps {
            if budget == 0 {
                run.truncated = true;
                break;
            }
            let report = self
                .catch_up_app(
                    org,
                    app,
                    options,
                    (&cursors, &held),
                    sink,
                    &mut budget,
                    progress,
                )
                .await;
            progress(report.to_string());
            run.apps.push(report);
        }
        if budget == 0 {
            run.truncated = true;
        }
        Ok(run)
    }

    #[allow(clippy::too_many_arguments)]
    async fn catch_up_app(
        &self,
        org: &OrgName,
        app: &AppName,
        options: &CatchUpOptions,
        (cursors, held): (&Cursors, &HeldInstances),
        sink: Option<&dyn EventSink>,
        budget: &mut usize,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> AppReport {
        let mut report = AppReport {
            app: format!("{}/{}", org.as_str(), app.as_str()),
            ..Default::default()
        };
        let (mut cursor, mut etag) = match cursors.read(org, app).await {
            Ok(Some((cursor, etag))) => (Some(cursor), Some(etag)),
            Ok(None) => (None, None),
            Err(e) => {
                report.failed = Some(format!("reading the cursor: {e:#}"));
                return report;
            }
        };
        report.cursor_before = cursor.as_ref().map(|c| c.after.clone());
        report.cursor_after = report.cursor_before.clone();
        if let Some(at) = cursor.as_ref().and_then(Cursor::parsed_time)
            && at < OffsetDateTime::now_utc() - RETENTION
        {
            report.warn(format!(
                "catch-up {}: the cursor is from {}, beyond Altinn's 90-day event retention; \
                 events since then may be gone from the feed (run `aos reconcile --since` for that period)",
                report.app,
                cursor.as_ref().and_then(|c| c.time.clone()).unwrap_or_default()
            ));
        }

        while *budget > 0 {
            let start = match &cursor {
                Some(c) => PullStart::After(c.after.clone()),
                None => PullStart::From(options.first_from),
            };
            let page = match self
                .altinn
                .pull_app_events(
                    org,
                    app,
                    &start,
                    &self.settings.event_types,
                    options.page_size.clamp(1, 1000),
                )
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    report.failed = Some(format!("page {}: {e}", report.pages + 1));
                    return report;
                }
            };
            report.pages += 1;
            if page.events.is_empty() {
                break;
            }
            if report.pages == 1 {
                check_restart(&mut report, cursor.as_ref(), &page);
            }
            report.seen += page.events.len();
            *budget = budget.saturating_sub(page.events.len());

            let mut accepted = Vec::new();
            for raw in &page.events {
                match self.judge_pulled(org, app, raw, held).await {
                    Verdict::Queue(event) => accepted.push(event),
                    Verdict::Skip(reason) => report.skip(reason),
                    Verdict::Refuse(reason, detail) => report.refuse(reason, detail),
                }
            }
            let Some(next) = next_cursor(&page) else {
                report.failed = Some(format!(
                    "page {}: neither a `next` link nor an event id to continue after",
                    report.pages
                ));
                return report;
            };
            if cursor.as_ref().is_some_and(|c| c.after == next.after) {
                report.failed = Some(format!(
                    "page {}: the feed did not move past event {}",
                    report.pages, next.after
                ));
                return report;
            }

            if let Some(sink) = sink {
                for event in &accepted {
                    if let Err(e) = sink.send(event).await {
                        // The cursor stays before this page: the next run pulls it again.
                        report.failed = Some(format!("{e:#}"));
                        return report;
                    }
                    report.queued += 1;
                }
                // Every event of the page is stored: now the cursor may move past it.
                match cursors.write(org, app, &next, etag.as_deref()).await {
                    Ok(Some(new_etag)) => etag = Some(new_etag),
                    Ok(None) => {
                        report.failed = Some(
                            "the cursor was moved by another run meanwhile; stopped (that run continues)"
                                .into(),
                        );
                        return report;
                    }
                    Err(e) => {
                        report.failed = Some(format!("writing the cursor: {e:#}"));
                        return report;
                    }
                }
            } else {
                for event in &accepted {
                    progress(format!("would queue {} ({})", event.source(), event.id()));
                }
            }
            report.cursor_after = Some(next.after.clone());
            cursor = Some(next);
            progress(format!(
                "catch-up {}: page {}, {} events; so far queued {}, skipped {}",
                report.app,
                report.pages,
                page.events.len(),
                report.queued,
                report.skipped_total()
            ));
        }
        report
    }

    /// The webhook's judgement of one pulled event, plus: it must name this app, an instance
    /// held after a permanent failure is not queued again (`crate::holds`), and an instance
    /// with a manifest needs nothing (its pushed event got there first; if that archive is not
    /// current, reconciliation finds the instance unconfirmed). An instance the org confirmed
    /// is recognised by the inbound step with one instance read, without downloading
    /// ([`CloudEvent::is_synthetic`]): the pull API does not say.
    async fn judge_pulled(
        &self,
        org: &OrgName,
        app: &AppName,
        raw: &Value,
        held: &HeldInstances,
    ) -> Verdict {
        let body = raw.to_string();
        if body.len() > MAX_PULLED_EVENT_BYTES {
            let id = raw.get("id").and_then(Value::as_str).unwrap_or("?");
            return Verdict::Refuse(
                "refused",
                format!(
                    "event {id}: {} bytes, more than a queue message holds ({MAX_PULLED_EVENT_BYTES})",
                    body.len()
                ),
            );
        }
        let event = match receive(body.as_bytes(), Some("application/json"), &self.settings) {
            ReceiveOutcome::Queue(event, ..) => event,
            ReceiveOutcome::ValidationPing | ReceiveOutcome::Ignored { .. } => {
                return Verdict::Skip("type not processed");
            }
            ReceiveOutcome::Rejected { reason, .. } => {
                let id = raw.get("id").and_then(Value::as_str).unwrap_or("?");
                return Verdict::Refuse("refused", format!("event {id}: {reason}"));
            }
        };
        let instance = match event.instance(&self.settings.apps_base_url) {
            Ok(instance) => instance,
            Err(e) => return Verdict::Refuse("refused", format!("event {}: {e}", event.id())),
        };
        if instance.org != *org || instance.app != *app {
            return Verdict::Refuse(
                "another app",
                format!(
                    "event {} in the feed of {}/{} names {instance}",
                    event.id(),
                    org.as_str(),
                    app.as_str()
                ),
            );
        }
        if held.contains(&instance) {
            return Verdict::Skip("held (permanent failure)");
        }
        match self.archive.manifest(&InstancePaths::new(&instance)).await {
            Ok(Some(_)) => return Verdict::Skip("already archived"),
            Ok(None) => {}
            // Unknown: queue it; the pipeline decides.
            Err(e) => tracing::debug!(error = %e, "catch-up: manifest unreadable"),
        }
        let mut marked = event.to_json();
        if let Value::Object(map) = &mut marked {
            map.insert(CAUGHT_UP_ATTRIBUTE.into(), "true".into());
        }
        match CloudEvent::from_value(marked) {
            Ok(marked) => Verdict::Queue(marked),
            Err(_) => Verdict::Queue(event),
        }
    }
}

impl Cursor {
    fn parsed_time(&self) -> Option<OffsetDateTime> {
        self.time
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
    }
}

/// The cursor after `page`: the `next` link's `after`, else the last event's id.
fn next_cursor(page: &EventPage) -> Option<Cursor> {
    let last = page.events.last()?;
    let text = |name: &str| last.get(name).and_then(Value::as_str).map(str::to_string);
    let after = page
        .next_after
        .clone()
        .or_else(|| text("id"))
        .filter(|a| !a.is_empty())?;
    // The time belongs to the last event only when the link names it.
    let time = if text("id").as_deref() == Some(after.as_str()) {
        text("time")
    } else {
        None
    };
    Some(Cursor {
        after,
        time,
        updated: OffsetDateTime::now_utc().format(&Rfc3339).ok(),
    })
}

/// An unknown `after` makes Altinn start again from the beginning of its retained feed: the
/// first page is then older than the cursor.
fn check_restart(report: &mut AppReport, cursor: Option<&Cursor>, page: &EventPage) {
    let Some(cursor_time) = cursor.and_then(Cursor::parsed_time) else {
        return;
    };
    let first = page
        .events
        .first()
        .and_then(|e| e.get("time"))
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    if let Some(first) = first
        && first + RESTART_SLACK < cursor_time
    {
        report.warn(format!(
            "catch-up {}: the feed restarted from the beginning (cursor event {} is unknown to \
             Altinn, e.g. purged after 90 days): events are pulled again from {}; events between \
             the retained feed's start and the cursor may have been missed (`aos reconcile --since` covers them)",
            report.app,
            cursor.map(|c| c.after.as_str()).unwrap_or_default(),
            first.format(&Rfc3339).unwrap_or_default()
        ));
    }
}

/// The cursor blobs, `events-cursor/{org}/{app}.json` in `aos-state`.
struct Cursors {
    state: Archive,
}

impl Cursors {
    fn new(state: Archive) -> Self {
        Cursors { state }
    }

    fn name(org: &OrgName, app: &AppName) -> String {
        cursor_blob_name(org, app)
    }

    async fn read(&self, org: &OrgName, app: &AppName) -> anyhow::Result<Option<(Cursor, String)>> {
        let name = Self::name(org, app);
        match self.state.read_tagged(&name).await? {
            None => Ok(None),
            Some((bytes, etag)) => serde_json::from_slice(&bytes)
                .map(|cursor| Some((cursor, etag)))
                .map_err(|e| {
                    anyhow::anyhow!("{name} is unreadable ({e}); delete it to start again")
                }),
        }
    }

    /// `Ok(None)` when the blob changed since `etag` was read (or appeared, for `None`).
    async fn write(
        &self,
        org: &OrgName,
        app: &AppName,
        cursor: &Cursor,
        etag: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        let name = Self::name(org, app);
        let body = serde_json::to_vec(cursor)?;
        let info = BlobInfo {
            content_type: "application/json".into(),
            metadata: Default::default(),
        };
        if !self
            .state
            .put_if(&name, Bytes::from(body), &info, etag)
            .await?
        {
            return Ok(None);
        }
        match self.state.read_tagged(&name).await? {
            Some((_, etag)) => Ok(Some(etag)),
            None => anyhow::bail!("{name} vanished after it was written"),
        }
    }
}

/// `events-cursor/{org}/{app}.json` (names already validated).
pub fn cursor_blob_name(org: &OrgName, app: &AppName) -> String {
    format!("{CURSOR_PREFIX}/{}/{}.json", org.as_str(), app.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cursor_follows_the_next_link_else_the_last_event() {
        let events = vec![
            json!({"id": "a", "time": "2024-01-01T00:00:00Z"}),
            json!({"id": "b", "time": "2024-01-02T00:00:00Z"}),
        ];
        let page = EventPage {
            events: events.clone(),
            next_after: Some("b".into()),
        };
        let cursor = next_cursor(&page).unwrap();
        assert_eq!(cursor.after, "b");
        assert_eq!(cursor.time.as_deref(), Some("2024-01-02T00:00:00Z"));
        let without_link = EventPage {
            events,
            next_after: None,
        };
        assert_eq!(next_cursor(&without_link).unwrap().after, "b");
        assert!(next_cursor(&EventPage::default()).is_none());
    }

    #[test]
    fn a_first_page_older_than_the_cursor_is_a_restart() {
        let cursor = Cursor {
            after: "gone".into(),
            time: Some("2024-06-01T00:00:00Z".into()),
            updated: None,
        };
        let page = |time: &str| EventPage {
            events: vec![json!({"id": "x", "time": time})],
            next_after: None,
        };
        let mut report = AppReport::default();
        check_restart(&mut report, Some(&cursor), &page("2024-06-01T00:30:00Z"));
        assert!(report.warnings.is_empty());
        check_restart(&mut report, Some(&cursor), &page("2024-05-31T23:30:00Z"));
        assert!(report.warnings.is_empty(), "within the slack");
        check_restart(&mut report, Some(&cursor), &page("2024-03-01T00:00:00Z"));
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].contains("restarted from the beginning"));
    }

    #[test]
    fn reports_name_every_count() {
        let mut report = AppReport {
            app: "ttd/a1".into(),
            cursor_after: Some("e9".into()),
            pages: 2,
            seen: 5,
            queued: 3,
            ..Default::default()
        };
        report.skip("type not processed");
        report.refuse("refused", "event x: source on another host".into());
        assert_eq!(
            report.to_string(),
            "catch-up ttd/a1: cursor (none) -> e9; pages 2, events seen 5, queued 3, skipped 2 \
             (refused 1, type not processed 1)"
        );
        let run = CatchUp {
            apps: vec![report],
            truncated: false,
        };
        assert_eq!(
            run.to_string(),
            "catch-up summary: apps 1, pages 2, events seen 5, queued 3, skipped 2, failed 0"
        );
    }
}

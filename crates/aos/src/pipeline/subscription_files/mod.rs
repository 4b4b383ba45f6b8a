//! Subscriptions managed by dropping files into blob containers: the reference system's
//! `EventsSubscriber` and `EventsDeSubscriber` (blob triggers on
//! `add-subscriptions/{name}.json` and `remove-subscriptions/{name}.json`).
//!
//! - **Add**: the file is checked ([`request::parse_add`]), POSTed to Altinn, Altinn's answer
//!   (with the subscription id) is written to `active-subscriptions/{name}.json`, and only then
//!   is the source file deleted. A crash in between leaves the source, the host triggers again,
//!   and the re-POST is harmless: Altinn returns the existing identical subscription (same
//!   filters, consumer and endpoint: `docs/specs/altinn.md` §2.6, `FindSubscription`), so no
//!   intent record or lookup before the POST is needed, and a re-dropped file still triggers
//!   Altinn's validation push again, as every POST does.
//! - **Remove**: `DELETE` the id named in the file (or in `active-subscriptions/{name}.json`);
//!   a 404 means it is already gone. Then the active file, then the source, are deleted.
//!
//! Unlike the reference, which swallowed every error, a file that can never succeed (bad JSON,
//! a rule broken, Altinn refusing with a 4xx) is **left in place** and reported: an error line
//! in the log and a report blob `subscriptions/failed/{add|remove}/{name}.json` in `aos-state`,
//! readable without retriggering anything. The invocation still succeeds, so the host does not
//! retry a hopeless file five times. Transient failures (Altinn 5xx/429, network, storage) are
//! errors, so the host retries the blob. The source blob itself is never modified: a metadata
//! change gives it a new ETag, and the host would trigger on it again.
//!
//! **Which account.** Every container here — the watched ones, `active-subscriptions` and the
//! reports' `aos-state` — is in the account of the trigger connection
//! (`QueueStorageSettings:ConnectionString`), never the archive's `BlobEndpoint` account: the
//! source file must be deleted from the account it was found in. (The reference wrote
//! `active-subscriptions` to the `BlobEndpoint` account and deleted from it, which only worked
//! when both were the same account.)

pub mod request;

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::altinn::{AltinnClient, AltinnError};
use crate::archive::{Archive, BlobInfo, ConditionalDelete};
use crate::domain::BaseUrl;
use crate::failures::STATE_CONTAINER;
use crate::storage::StorageEndpoint;

use super::error::StepError;
use request::{FileName, active_id, parse_add, parse_remove, redact, report_key};

/// The watched containers (the `path`s in the two `function.json` files).
pub const ADD_CONTAINER: &str = "add-subscriptions";
pub const REMOVE_CONTAINER: &str = "remove-subscriptions";

/// Which of the two functions a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
}

impl Action {
    fn container(self) -> &'static str {
        match self {
            Action::Add => ADD_CONTAINER,
            Action::Remove => REMOVE_CONTAINER,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
        }
    }
}

/// How a file was handled, when the invocation as such succeeded.
#[derive(Debug)]
pub enum FileOutcome {
    /// Done; the line says what happened.
    Done(String),
    /// Left in place and reported; the line says why.
    Refused(String),
}

/// `aos-state` `subscriptions/failed/{add|remove}/{name}.json`: why a file was left in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileReport {
    /// `add-subscriptions/{name}.json` as the trigger named it.
    pub file: String,
    pub reason: String,
    pub at: String,
}

/// The report's blob name in `aos-state`.
pub fn report_blob(action: Action, raw_name: &str) -> String {
    format!(
        "subscriptions/failed/{}/{}.json",
        action.word(),
        report_key(raw_name)
    )
}

/// The subscription containers and Altinn, as the two functions use them.
#[derive(Clone)]
pub struct SubscriptionFiles {
    altinn: AltinnClient,
    apps: BaseUrl,
    add: Archive,
    remove: Archive,
    active: Archive,
    state: Archive,
}

impl SubscriptionFiles {
    /// `blobs` is the blob service of the trigger connection's account (see the module doc).
    pub fn new(
        altinn: AltinnClient,
        apps: BaseUrl,
        blobs: StorageEndpoint,
        active_container: &str,
    ) -> Self {
        SubscriptionFiles {
            altinn,
            apps,
            add: Archive::new(blobs.clone(), ADD_CONTAINER),
            remove: Archive::new(blobs.clone(), REMOVE_CONTAINER),
            active: Archive::new(blobs.clone(), active_container),
            state: Archive::new(blobs, STATE_CONTAINER),
        }
    }

    /// `EventsSubscriber`: one `add-subscriptions/{raw_name}.json` with `content`.
    pub async fn add(&self, raw_name: &str, content: &[u8]) -> Result<FileOutcome, StepError> {
        let action = Action::Add;
        let (name, request) = match FileName::parse(raw_name)
            .and_then(|name| Ok((name, parse_add(content, &self.apps)?)))
        {
            Ok(checked) => checked,
            Err(reason) => return self.refuse(action, raw_name, reason).await,
        };
        let subscription = match self
            .altinn
            .post_subscription(&request.body, &request.source_filter)
            .await
        {
            Ok(subscription) => subscription,
            Err(e) => {
                let reason = redact(&e.to_string(), &request.endpoint);
                return self.refuse_or_retry(action, raw_name, e, reason).await;
            }
        };
        let json = serde_json::to_vec_pretty(&subscription.raw).expect("JSON values serialise");
        self.active
            .put(&name.blob(), Bytes::from(json), &json_info())
            .await?;
        let deleted = self.add.delete_if_unchanged(&name.blob(), content).await?;
        self.clear_report(action, raw_name).await;
        let mut line = format!(
            "subscription {} for {} ({}) is in {}/{}; {} {}",
            subscription.id,
            request.source_filter,
            subscription.type_filter.as_deref().unwrap_or("any type"),
            self.active.container_name(),
            name.blob(),
            source(action, raw_name),
            source_fate(deleted),
        );
        if !subscription.validated {
            line.push_str("; Altinn validates the endpoint next (check `validated`)");
        }
        for note in &request.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        Ok(FileOutcome::Done(line))
    }

    /// `EventsDeSubscriber`: one `remove-subscriptions/{raw_name}.json` with `content`.
    pub async fn remove(&self, raw_name: &str, content: &[u8]) -> Result<FileOutcome, StepError> {
        let action = Action::Remove;
        let checked = FileName::parse(raw_name).and_then(|name| Ok((name, parse_remove(content)?)));
        let (name, given_id) = match checked {
            Ok(checked) => checked,
            Err(reason) => return self.refuse(action, raw_name, reason).await,
        };
        let id = match given_id {
            Some(id) => id,
            None => match self.active.read_small(&name.blob()).await? {
                None => {
                    let reason = format!(
                        "the file names no `id` and there is no {}/{} to take it from \
                         (already removed?)",
                        self.active.container_name(),
                        name.blob()
                    );
                    return self.refuse(action, raw_name, reason).await;
                }
                Some(active) => match active_id(&active) {
                    Ok(id) => id,
                    Err(e) => {
                        let reason = format!(
                            "the file names no `id`, and {}/{} is unusable: {e}",
                            self.active.container_name(),
                            name.blob()
                        );
                        return self.refuse(action, raw_name, reason).await;
                    }
                },
            },
        };
        let gone = match self.altinn.delete_subscription(id).await {
            Ok(()) => "deleted in Altinn",
            Err(AltinnError::Status { status: 404, .. }) => "already gone in Altinn",
            Err(e) => {
                let reason = e.to_string();
                return self.refuse_or_retry(action, raw_name, e, reason).await;
            }
        };
        self.active.delete(&name.blob()).await?;
        let deleted = self
            .remove
            .delete_if_unchanged(&name.blob(), content)
            .await?;
        self.clear_report(action, raw_name).await;
        Ok(FileOutcome::Done(format!(
            "subscription {id} {gone}; {}/{} deleted; {} {} (Altinn may deliver for up to an \
             hour more)",
            self.active.container_name(),
            name.blob(),
            source(action, raw_name),
            source_fate(deleted),
        )))
    }

    /// A retryable Altinn error fails the attempt; any other refuses the file.
    async fn refuse_or_retry(
        &self,
        action: Action,
        raw_name: &str,
        error: AltinnError,
        reason: String,
    ) -> Result<FileOutcome, StepError> {
        if error.is_retryable() {
            // The reason, not `error`: it is the error's text with the endpoint's key redacted.
            Err(StepError::retry(anyhow::anyhow!(reason)))
        } else {
            self.refuse(action, raw_name, format!("Altinn refused it: {reason}"))
                .await
        }
    }

    /// Leaves the file in place and writes the report. If the report cannot be written the
    /// attempt fails instead (storage trouble is transient, and the report is the operator's
    /// only durable trace).
    async fn refuse(
        &self,
        action: Action,
        raw_name: &str,
        reason: String,
    ) -> Result<FileOutcome, StepError> {
        let report = FileReport {
            file: source(action, raw_name),
            reason: reason.clone(),
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let json = serde_json::to_vec_pretty(&report).expect("a report serialises");
        let blob = report_blob(action, raw_name);
        self.state
            .put(&blob, Bytes::from(json), &json_info())
            .await?;
        Ok(FileOutcome::Refused(format!(
            "{} left in place: {reason} (report: {STATE_CONTAINER}/{blob})",
            report.file
        )))
    }

    /// Removes an earlier report once the file went through. Best effort: a stale report is
    /// only misleading, never harmful.
    async fn clear_report(&self, action: Action, raw_name: &str) {
        let blob = report_blob(action, raw_name);
        if let Err(e) = self.state.delete(&blob).await {
            tracing::warn!(blob, error = %e, "could not delete an old subscription report");
        }
    }

    /// The report for a file, if one was written.
    pub async fn report(&self, action: Action, raw_name: &str) -> Option<FileReport> {
        let bytes = self
            .state
            .read_small(&report_blob(action, raw_name))
            .await
            .ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The source file's path for logs and reports; a hostile name cannot break the line.
fn source(action: Action, raw_name: &str) -> String {
    format!("{}/{}.json", action.container(), raw_name.escape_debug())
}

fn json_info() -> BlobInfo {
    BlobInfo {
        content_type: "application/json".into(),
        metadata: HashMap::new(),
    }
}

/// How the line tells what became of the source file. A file replaced while it was handled is
/// left for the trigger that its new content fires.
fn source_fate(deleted: ConditionalDelete) -> &'static str {
    match deleted {
        ConditionalDelete::Deleted | ConditionalDelete::AlreadyGone => "deleted",
        ConditionalDelete::Changed => {
            "left in place: it was replaced meanwhile, and its new content is handled by its own trigger"
        }
    }
}

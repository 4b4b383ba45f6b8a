//! The poison queues: what failed for good, why, and putting it back after a fix (the logic
//! of `aos poison list|replay`, [`crate::cli`]).
//!
//! Poison messages are the CloudEvents as received (the host moves them unchanged), so a
//! replay is a move back to the original queue; the pipeline is idempotent, so replaying an
//! instance that was meanwhile archived or confirmed is harmless.

use crate::domain::CloudEvent;
use crate::failures::{FailureRecord, Failures};
use crate::queue::{Queue, poison_queue_name};

/// A poisoned message with what is known about it.
#[derive(Clone, Debug)]
pub struct PoisonEntry {
    pub queue: String,
    pub message_id: String,
    pub inserted: Option<String>,
    pub event: Option<CloudEvent>,
    pub last_failure: Option<FailureRecord>,
}

impl std::fmt::Display for PoisonEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-poison  message {}", self.queue, self.message_id)?;
        if let Some(inserted) = &self.inserted {
            write!(f, "  poisoned {inserted}")?;
        }
        match &self.event {
            Some(event) => write!(
                f,
                "\n  event {}  type {}\n  source {}",
                event.id(),
                event.event_type(),
                event.source()
            )?,
            None => write!(f, "\n  (not a CloudEvent)")?,
        }
        match &self.last_failure {
            Some(failure) => write!(
                f,
                "\n  last error (attempt {}, {}, {}): {}",
                failure.attempt, failure.kind, failure.at, failure.error
            ),
            None => write!(f, "\n  last error: not recorded"),
        }
    }
}

/// Up to 32 messages of each poison queue (peeked, not leased).
pub async fn list(queues: &[Queue], failures: &Failures) -> anyhow::Result<Vec<PoisonEntry>> {
    let mut entries = Vec::new();
    for queue in queues {
        let poison = poison_of(queue)?;
        for message in poison.peek(32).await? {
            let event = message
                .text
                .as_deref()
                .and_then(|t| CloudEvent::parse(t.as_bytes()).ok());
            let last_failure = match &event {
                Some(event) => failures.last(queue.name(), event.id()).await,
                None => None,
            };
            entries.push(PoisonEntry {
                queue: queue.name().to_string(),
                message_id: message.id,
                inserted: message.inserted.and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
                event,
                last_failure,
            });
        }
    }
    Ok(entries)
}

/// What [`replay`] moved.
#[derive(Debug, Default)]
pub struct Replayed {
    pub moved: usize,
    /// The moved messages that are CloudEvents (their instances' holds are released by the
    /// caller: an operator who replays has looked at the failure).
    pub events: Vec<CloudEvent>,
}

/// Moves poisoned messages back to their queue: all of them, or only those whose event id is
/// in `event_ids`.
pub async fn replay(queue: &Queue, event_ids: &[String]) -> anyhow::Result<Replayed> {
    let poison = poison_of(queue)?;
    let mut replayed = Replayed::default();
    loop {
        // Messages not selected stay leased for a minute, so one pass sees each message once.
        // A poison queue that does not exist (nothing ever failed there) has nothing to replay.
        let batch = match poison.receive(32, 60).await {
            Ok(batch) => batch,
            Err(e) if e.http_status() == Some(azure_core::http::StatusCode::NotFound) => {
                return Ok(replayed);
            }
            Err(e) => return Err(e.into()),
        };
        if batch.is_empty() {
            return Ok(replayed);
        }
        for message in batch {
            let event = message
                .text
                .as_deref()
                .and_then(|t| CloudEvent::parse(t.as_bytes()).ok());
            let selected = event_ids.is_empty()
                || event
                    .as_ref()
                    .is_some_and(|e| event_ids.iter().any(|id| id == e.id()));
            if selected {
                poison.move_to(&message, queue).await?;
                replayed.moved += 1;
                replayed.events.extend(event);
            }
        }
    }
}

fn poison_of(queue: &Queue) -> anyhow::Result<Queue> {
    Ok(queue.sibling(&poison_queue_name(queue.name()))?)
}

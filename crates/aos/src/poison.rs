//! The poison queues: what failed for good, why, and putting it back after a fix (the logic
//! of `aos poison list|replay`, [`crate::cli`]).
//!
//! Every poison queue the product or the host writes is covered: `<queue>-poison` of the three
//! step queues, and the host's `webjobs-blobtrigger-poison` (blob-trigger messages of the
//! subscription files, listed only: a blob trigger fires again when its file is written again,
//! not from a queue). Counts are the service's own (approximate message count), not the number
//! of messages looked at; the same event poisoned twice (a move to poison interrupted and
//! retried) is shown once with its number of copies.
//!
//! Poison messages are the CloudEvents as received (the host moves them unchanged), so a
//! replay is a move back to the original queue; the pipeline is idempotent, so replaying an
//! instance that was meanwhile archived or confirmed is harmless.

use crate::domain::{CloudEvent, Printable};
use crate::failures::{FailureRecord, Failures};
use crate::queue::{Queue, poison_queue_name};

/// The host's poison queue for blob-trigger messages (the subscription files' functions).
pub const BLOB_TRIGGER_POISON: &str = "webjobs-blobtrigger-poison";

/// Messages looked at per queue for `list` (the service returns at most 32 at a time).
pub const PEEK: u8 = 32;

/// A poisoned event (or a message that is not one) with what is known about it.
#[derive(Clone, Debug)]
pub struct PoisonEntry {
    /// The queue the message failed in (`events-inbound`), or the poison queue itself for a
    /// queue without an origin (the blob triggers').
    pub queue: String,
    /// Message ids of every copy seen.
    pub message_ids: Vec<String>,
    pub inserted: Option<String>,
    pub event: Option<CloudEvent>,
    /// The message text when it is not a CloudEvent (shown shortened and escaped).
    pub raw: Option<String>,
    pub last_failure: Option<FailureRecord>,
}

/// One poison queue: its true size and the entries of the messages looked at.
#[derive(Clone, Debug)]
pub struct PoisonQueue {
    pub name: String,
    /// The service's approximate count of messages in the queue.
    pub count: u64,
    pub entries: Vec<PoisonEntry>,
}

impl std::fmt::Display for PoisonEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let copies = self.message_ids.len();
        write!(
            f,
            "{}  message {}",
            Printable(&self.queue),
            Printable(self.message_ids.first().map_or("?", String::as_str))
        )?;
        if copies > 1 {
            write!(f, "  ({copies} copies of this event)")?;
        }
        if let Some(inserted) = &self.inserted {
            write!(f, "  poisoned {inserted}")?;
        }
        match (&self.event, &self.raw) {
            (Some(event), _) => write!(
                f,
                "\n  event {}  type {}\n  source {}",
                Printable(event.id()),
                Printable(event.event_type()),
                Printable(event.source())
            )?,
            (None, Some(raw)) => write!(
                f,
                "\n  (not a CloudEvent) {}",
                Printable(&raw.chars().take(200).collect::<String>())
            )?,
            (None, None) => write!(f, "\n  (not a CloudEvent)")?,
        }
        match &self.last_failure {
            Some(failure) => write!(
                f,
                "\n  last error (attempt {}, {}, {}): {}",
                failure.attempt,
                Printable(&failure.kind),
                Printable(&failure.at),
                Printable(&failure.error)
            ),
            None if self.event.is_some() => write!(f, "\n  last error: not recorded"),
            None => Ok(()),
        }
    }
}

/// Every poison queue of `queues` (the step queues) and `host_queues` (poison queues the host
/// owns, listed as they are): the true count and up to [`PEEK`] messages each, peeked (not
/// leased), copies of one event merged.
pub async fn list(
    queues: &[Queue],
    host_queues: &[Queue],
    failures: &Failures,
) -> anyhow::Result<Vec<PoisonQueue>> {
    let mut listed = Vec::new();
    for queue in queues {
        let poison = poison_of(queue)?;
        listed.push(peek_queue(&poison, Some(queue.name()), failures).await?);
    }
    for queue in host_queues {
        listed.push(peek_queue(queue, None, failures).await?);
    }
    Ok(listed)
}

async fn peek_queue(
    poison: &Queue,
    origin: Option<&str>,
    failures: &Failures,
) -> anyhow::Result<PoisonQueue> {
    let count = poison.approximate_count().await?;
    let mut entries: Vec<PoisonEntry> = Vec::new();
    for message in poison.peek(PEEK).await? {
        let event = message
            .text
            .as_deref()
            .and_then(|t| CloudEvent::parse(t.as_bytes()).ok());
        if let Some(event) = &event
            && let Some(same) = entries
                .iter_mut()
                .find(|e| e.event.as_ref().is_some_and(|seen| seen.id() == event.id()))
        {
            same.message_ids.push(message.id);
            continue;
        }
        let last_failure = match (&event, origin) {
            (Some(event), Some(origin)) => failures.last(origin, event.id()).await,
            _ => None,
        };
        entries.push(PoisonEntry {
            queue: origin.unwrap_or(poison.name()).to_string(),
            message_ids: vec![message.id],
            inserted: message.inserted.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            raw: if event.is_none() { message.text } else { None },
            event,
            last_failure,
        });
    }
    Ok(PoisonQueue {
        name: poison.name().to_string(),
        count,
        entries,
    })
}

/// Which poisoned messages a replay moves.
#[derive(Clone, Copy, Debug)]
pub enum Selection<'a> {
    All,
    /// Only the events with these ids.
    Events(&'a [String]),
}

impl Selection<'_> {
    fn takes(&self, event: Option<&CloudEvent>) -> bool {
        match self {
            Selection::All => true,
            Selection::Events(ids) => event.is_some_and(|e| ids.iter().any(|id| id == e.id())),
        }
    }
}

/// What [`replay`] moved (or [`preview`] would move).
#[derive(Debug, Default)]
pub struct Replayed {
    pub moved: usize,
    /// The selected messages that are CloudEvents (their instances' holds are released by the
    /// caller: an operator who replays has looked at the failure).
    pub events: Vec<CloudEvent>,
}

/// Moves the selected poisoned messages back to their queue, reporting each through
/// `progress`.
pub async fn replay(
    queue: &Queue,
    selection: Selection<'_>,
    progress: &mut dyn FnMut(&CloudEvent),
) -> anyhow::Result<Replayed> {
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
            if !selection.takes(event.as_ref()) {
                continue;
            }
            poison.move_to(&message, queue).await?;
            replayed.moved += 1;
            if let Some(event) = event {
                progress(&event);
                replayed.events.push(event);
            }
        }
    }
}

/// What [`replay`] would move, from a peek: nothing is leased or changed (not even a
/// message's dequeue count), so at most [`PEEK`] messages are looked at; `count` says how many
/// the queue holds.
pub async fn preview(queue: &Queue, selection: Selection<'_>) -> anyhow::Result<(Replayed, u64)> {
    let poison = poison_of(queue)?;
    let count = poison.approximate_count().await?;
    let mut replayed = Replayed::default();
    for message in poison.peek(PEEK).await? {
        let event = message
            .text
            .as_deref()
            .and_then(|t| CloudEvent::parse(t.as_bytes()).ok());
        if selection.takes(event.as_ref()) {
            replayed.moved += 1;
            replayed.events.extend(event);
        }
    }
    Ok((replayed, count))
}

fn poison_of(queue: &Queue) -> anyhow::Result<Queue> {
    Ok(queue.sibling(&poison_queue_name(queue.name()))?)
}

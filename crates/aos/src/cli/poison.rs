//! `aos poison list|replay`: what failed for good, why, and putting it back after a fix. The
//! reading and moving of poisoned messages is [`crate::poison`]; this opens the queues from the
//! settings and prints.
//!
//! Only storage settings are needed (the queue connection and the archive's account, where
//! `aos-state` keeps the failure records and holds); `AppsBaseUrl` is used when set, to name
//! the instances whose holds a replay releases. Data goes to stdout, progress to stderr; a
//! storage that cannot be reached exits 3.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::error::CliError;
use super::settings::SettingsFrom;
use crate::archive::Archive;
use crate::config::StorageSettings;
use crate::domain::{BaseUrl, InstanceRef, Printable};
use crate::failures::{Failures, STATE_CONTAINER};
use crate::holds::Holds;
use crate::poison::{BLOB_TRIGGER_POISON, PoisonQueue, Selection};
use crate::queue::{Queue, QueueAccount};
use crate::redact::redact;
use crate::storage::StorageEndpoint;

#[derive(Subcommand)]
pub enum Action {
    /// Show every poison queue: its message count, and per poisoned event the event, instance
    /// and last recorded error (up to 32 messages per queue; copies of one event shown once).
    List {
        /// Print JSON (one object with every queue) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move poisoned messages back to their queue (after fixing the cause); releases the
    /// instances' holds, so reconciliation may queue them again.
    Replay(ReplayArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["event_ids", "all"]))]
pub struct ReplayArgs {
    /// Which queue's poison to replay.
    #[arg(long, value_enum, default_value_t = StepQueue::All)]
    queue: StepQueue,
    /// Replay only the event with this id (repeatable).
    #[arg(long = "id", visible_alias = "event-id")]
    event_ids: Vec<String>,
    /// Replay every poisoned message of the chosen queue(s).
    #[arg(long)]
    all: bool,
    /// Show what would be replayed (up to 32 messages per queue, peeked) and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The step queues whose poison can be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StepQueue {
    Inbound,
    Feedback,
    Confirmation,
    All,
}

/// Runs one `aos poison` command; errors are reported under its name.
pub async fn run(action: Action, from: &SettingsFrom) -> Result<(), CliError> {
    poison(action, from).await.map_err(|e| e.named("poison"))
}

/// A storage error: unreachable (exit 3), with its cause chain.
fn storage(e: impl Into<anyhow::Error>) -> CliError {
    CliError::unreachable(format!("{:#}", e.into()))
}

async fn poison(action: Action, from: &SettingsFrom) -> Result<(), CliError> {
    let settings = StorageSettings::from_source(&from.source()?).map_err(CliError::usage)?;
    super::settings::register_storage_secrets(&settings.blob, &settings.queues);
    let account = QueueAccount::from_settings(&settings.queues, "`aos poison`")?;
    let queue = |name: &str| account.queue(name).map_err(storage);
    let names = &settings.queues;
    let state = Archive::new(StorageEndpoint::for_blobs(&settings.blob)?, STATE_CONTAINER);
    match action {
        Action::List { json } => {
            let step_queues = [
                queue(&names.inbound)?,
                queue(&names.feedback)?,
                queue(&names.confirmation)?,
            ];
            let host_queues = [queue(BLOB_TRIGGER_POISON)?];
            let failures = Failures::new(state);
            let listed = crate::poison::list(&step_queues, &host_queues, &failures)
                .await
                .map_err(storage)?;
            if json {
                println!("{}", redact(&list_json(&listed).to_string()));
            } else {
                print_list(&listed);
            }
        }
        Action::Replay(args) => {
            let chosen: Vec<Queue> = match args.queue {
                StepQueue::Inbound => vec![queue(&names.inbound)?],
                StepQueue::Feedback => vec![queue(&names.feedback)?],
                StepQueue::Confirmation => vec![queue(&names.confirmation)?],
                StepQueue::All => vec![
                    queue(&names.inbound)?,
                    queue(&names.feedback)?,
                    queue(&names.confirmation)?,
                ],
            };
            let selection = if args.all {
                Selection::All
            } else {
                Selection::Events(&args.event_ids)
            };
            let holds = Holds::new(state);
            for queue in &chosen {
                replay_one(
                    queue,
                    selection,
                    args.dry_run,
                    &holds,
                    settings.apps_base_url.as_ref(),
                )
                .await?;
            }
        }
    }
    Ok(())
}

async fn replay_one(
    queue: &Queue,
    selection: Selection<'_>,
    dry_run: bool,
    holds: &Holds,
    apps: Option<&BaseUrl>,
) -> Result<(), CliError> {
    let name = queue.name();
    if dry_run {
        let (would, count) = crate::poison::preview(queue, selection)
            .await
            .map_err(storage)?;
        for event in &would.events {
            println!(
                "would replay {}  source {}",
                Printable(event.id()),
                Printable(event.source())
            );
        }
        println!(
            "dry run: {} of the first {} of {count} message(s) in {name}-poison would move back to {name}; nothing was moved",
            would.moved,
            count.min(u64::from(crate::poison::PEEK))
        );
        return Ok(());
    }
    let mut progress = |event: &crate::domain::CloudEvent| {
        eprintln!("replayed {} to {name}", Printable(event.id()));
    };
    let replayed = crate::poison::replay(queue, selection, &mut progress)
        .await
        .map_err(storage)?;
    println!(
        "moved {} message(s) from {name}-poison back to {name}",
        replayed.moved
    );
    let mut released = 0;
    for event in &replayed.events {
        let Some(instance) = instance_of(event, apps) else {
            continue;
        };
        if holds.release(&instance).await.map_err(storage)? {
            released += 1;
        }
    }
    if released > 0 {
        println!("released {released} hold(s) on replayed instances");
    }
    Ok(())
}

/// The instance an event names: checked against `AppsBaseUrl` when it is set; otherwise
/// against the source's own origin — good enough to name a hold (no request is sent to it).
fn instance_of(event: &crate::domain::CloudEvent, apps: Option<&BaseUrl>) -> Option<InstanceRef> {
    match apps {
        Some(apps) => event.instance(apps).ok(),
        None => {
            let url = url::Url::parse(event.source()).ok()?;
            let origin =
                BaseUrl::parse(&format!("{}/", url.origin().ascii_serialization())).ok()?;
            event.instance(&origin).ok()
        }
    }
}

fn print_list(listed: &[PoisonQueue]) {
    let mut total = 0;
    for queue in listed {
        total += queue.count;
        let shown: usize = queue.entries.iter().map(|e| e.message_ids.len()).sum();
        println!(
            "{}: {} message(s){}",
            queue.name,
            queue.count,
            if (shown as u64) < queue.count {
                format!(", the first {shown} shown")
            } else {
                String::new()
            }
        );
        for entry in &queue.entries {
            println!("{}\n", redact(&entry.to_string()));
        }
    }
    println!("{total} poisoned message(s)");
}

fn list_json(listed: &[PoisonQueue]) -> serde_json::Value {
    let queues: Vec<_> = listed
        .iter()
        .map(|queue| {
            let entries: Vec<_> = queue
                .entries
                .iter()
                .map(|e| {
                    json!({
                        "queue": e.queue,
                        "messageIds": e.message_ids,
                        "poisoned": e.inserted,
                        "eventId": e.event.as_ref().map(|ev| ev.id()),
                        "type": e.event.as_ref().map(|ev| ev.event_type()),
                        "source": e.event.as_ref().map(|ev| ev.source()),
                        "lastFailure": e.last_failure,
                    })
                })
                .collect();
            json!({"name": queue.name, "count": queue.count, "entries": entries})
        })
        .collect();
    json!({
        "total": listed.iter().map(|q| q.count).sum::<u64>(),
        "queues": queues,
    })
}

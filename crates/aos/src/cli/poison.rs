//! `aos poison list|replay`: what failed for good, why, and putting it back after a fix. The
//! reading and moving of poisoned messages is [`crate::poison`]; this opens the queues from the
//! settings and prints.

use clap::Subcommand;

use super::error::CliError;
use super::settings::{SettingsFrom, load_settings};
use crate::archive::Archive;
use crate::domain::Printable;
use crate::failures::{Failures, STATE_CONTAINER};
use crate::holds::Holds;
use crate::queue::QueueAccount;
use crate::redact::redact;
use crate::storage::StorageEndpoint;

#[derive(Subcommand)]
pub enum Action {
    /// Show poisoned messages: event, instance and the last recorded error.
    List,
    /// Move poisoned messages back to their queue (after fixing the cause); releases the
    /// instances' holds, so reconciliation may queue them again.
    Replay {
        /// Which queue's poison to replay: inbound, confirmation or all.
        #[arg(long, default_value = "all")]
        queue: String,
        /// Replay only these event ids (repeatable); default: every message.
        #[arg(long = "event-id")]
        event_ids: Vec<String>,
    },
}

/// Runs one `aos poison` command. Every error, a storage failure included, is
/// `aos poison: …` with exit 2, as it has been since the command exists.
pub async fn run(action: Action, from: &SettingsFrom) -> Result<(), CliError> {
    poison(action, from)
        .await
        .map_err(|e| CliError::usage(format!("{e:#}")).named("poison"))
}

async fn poison(action: Action, from: &SettingsFrom) -> anyhow::Result<()> {
    let settings = load_settings(from)?.settings;
    let account = QueueAccount::from_settings(&settings.queues, "`aos poison`")?;
    let inbound = account.queue(&settings.queues.inbound)?;
    let confirmation = account.queue(&settings.queues.confirmation)?;
    match action {
        Action::List => {
            let failures = Failures::new(Archive::new(
                StorageEndpoint::for_blobs(&settings.blob)?,
                STATE_CONTAINER,
            ));
            let entries = crate::poison::list(&[inbound, confirmation], &failures).await?;
            for entry in &entries {
                for line in redact(&entry.to_string()).lines() {
                    println!("{}", Printable(line));
                }
                println!();
            }
            println!("{} poisoned message(s)", entries.len());
        }
        Action::Replay { queue, event_ids } => {
            let queues = match queue.as_str() {
                "inbound" => vec![inbound],
                "confirmation" => vec![confirmation],
                "all" => vec![inbound, confirmation],
                other => {
                    anyhow::bail!("--queue must be inbound, confirmation or all, not `{other}`")
                }
            };
            let holds = Holds::new(Archive::new(
                StorageEndpoint::for_blobs(&settings.blob)?,
                STATE_CONTAINER,
            ));
            for queue in &queues {
                let replayed = crate::poison::replay(queue, &event_ids).await?;
                println!(
                    "moved {} message(s) from {}-poison back to {}",
                    replayed.moved,
                    queue.name(),
                    queue.name()
                );
                let mut released = 0;
                for event in &replayed.events {
                    if let Ok(instance) = event.instance(&settings.apps_base_url)
                        && holds.release(&instance).await?
                    {
                        released += 1;
                    }
                }
                if released > 0 {
                    println!("released {released} hold(s) on replayed instances");
                }
            }
        }
    }
    Ok(())
}

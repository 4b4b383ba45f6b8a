//! `aos reconcile [--since <date>] [--dry-run]`: the reconciler run by hand (or by a scheduler
//! outside Azure Functions).
//!
//! Same settings and same search as the `EventsReconciler` function
//! ([`crate::pipeline::reconcile`]); the synthetic events go to the inbound queue on
//! `QueueStorageSettings__ConnectionString`, base64 like the host's messages, so whichever
//! runtime works that queue (the Functions host or `aos run`) archives and confirms them.
//! Progress goes to stderr, one line per query page and per 100 messages queued; stdout gets
//! the failures and the summary line.

use std::time::Instant;

use time::OffsetDateTime;

use super::error::CliError;
use super::settings::{SettingsFrom, load_settings};
use crate::pipeline::Pipeline;
use crate::pipeline::reconcile::ReconcileOptions;
use crate::queue::QueueAccount;
use crate::redact::redact;

#[derive(clap::Args)]
pub struct Args {
    /// Start of the time-window sweep on `process.ended` (RFC 3339, or a date
    /// `YYYY-MM-DD`); default: 7 days ago.
    #[arg(long)]
    since: Option<String>,
    /// Report what would be queued; queue nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as one JSON object (summary, wouldQueue, failed, stopped) instead of
    /// lines; progress stays on stderr.
    #[arg(long)]
    json: bool,
}

/// `--since`: RFC 3339 (`2024-05-01T00:00:00Z`) or a date (`2024-05-01`, midnight UTC).
fn parse_since(value: &str) -> Result<OffsetDateTime, String> {
    crate::config::parse_time(value).ok_or_else(|| {
        format!(
            "--since `{}` is neither an RFC 3339 time nor a YYYY-MM-DD date",
            value.trim()
        )
    })
}

/// Runs one reconciliation and prints its summary; instances that could not be queued make
/// it fail (exit 1) after the summary.
pub async fn run(args: Args, from: &SettingsFrom) -> Result<(), CliError> {
    reconcile(args, from)
        .await
        .map_err(|e| e.name_failures("reconcile"))
}

async fn reconcile(
    Args {
        since,
        dry_run,
        json,
    }: Args,
    from: &SettingsFrom,
) -> Result<(), CliError> {
    let mut options = ReconcileOptions::default();
    if let Some(since) = since {
        options.since = parse_since(&since).map_err(CliError::Usage)?;
    }
    let settings = load_settings(from)?;
    // Checked before the (possibly long) search: without it nothing could be queued.
    let inbound = if dry_run {
        None
    } else {
        let account =
            QueueAccount::from_settings(&settings.queues, "`aos reconcile` (or use --dry-run)")?;
        Some((account, settings.queues.inbound.clone()))
    };
    let pipeline = Pipeline::from_settings(settings).await?;

    let started = Instant::now();
    let mut progress = |line: String| eprintln!("{}", redact(&line));
    let run = pipeline
        .reconcile(&options, &mut progress)
        .await
        .map_err(CliError::usage)?;
    let mut failed: Vec<String> = run.reasons.iter().map(|r| redact(r).into_owned()).collect();
    if !json {
        for reason in &failed {
            println!("failed: {reason}");
        }
    } else if run.all_queries_failed() {
        // The reasons are the answer even when the run stops here.
        let out =
            serde_json::json!({ "dryRun": dry_run, "failed": failed, "stopped": run.stopped });
        println!("{}", redact(&out.to_string()));
    }
    if run.altinn_unreachable() {
        return Err(CliError::unreachable(
            "Altinn could not be reached: every instance query failed; nothing was queued",
        ));
    }
    if run.all_queries_failed() {
        return Err(CliError::failed(
            "every instance query failed; nothing was queued",
        ));
    }

    let mut summary = run.summary(0);
    let mut would_queue = Vec::new();
    match &inbound {
        None => {
            would_queue = run.events.iter().map(|e| e.source().to_string()).collect();
            if !json {
                for source in &would_queue {
                    println!("would queue {source}");
                }
            }
            eprintln!(
                "dry run: {} instance(s) would be queued; nothing was queued",
                run.events.len()
            );
        }
        Some(_) if run.events.is_empty() => {}
        Some((account, name)) => {
            let queue = account
                .existing_queue(name)
                .await
                .map_err(CliError::dependency)?;
            for (n, event) in run.events.iter().enumerate() {
                match queue.send(&event.message_text()).await {
                    Ok(()) => summary.queued += 1,
                    Err(e) => {
                        summary.failed += 1;
                        let why =
                            format!("queueing {}: {}", event.source(), crate::cause::line(&e));
                        if !json {
                            println!("failed: {why}");
                        }
                        failed.push(why);
                    }
                }
                if (n + 1) % 100 == 0 {
                    eprintln!("queued {} of {}", n + 1, run.events.len());
                }
            }
        }
    }
    if inbound.is_some() {
        pipeline
            .record_reconcile_run("aos reconcile", &summary, &run.stopped)
            .await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let out = serde_json::json!({
            "dryRun": dry_run,
            "summary": summary,
            "wouldQueue": would_queue,
            "failed": failed,
            "stopped": run.stopped,
            "seconds": seconds,
        });
        println!("{}", redact(&out.to_string()));
    } else {
        for why in &run.stopped {
            println!("{why}");
        }
        println!("{summary} ({seconds:.1} s)");
    }
    if summary.failed == 0 {
        Ok(())
    } else {
        Err(CliError::Reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_and_plain_dates() {
        assert_eq!(
            parse_since("2024-05-01T12:00:00+02:00").unwrap(),
            time::macros::datetime!(2024-05-01 10:00 UTC)
        );
        assert_eq!(
            parse_since("2024-05-01").unwrap(),
            time::macros::datetime!(2024-05-01 0:00 UTC)
        );
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("2024-13-01").is_err());
    }
}

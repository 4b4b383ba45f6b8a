//! `aos catch-up [--from <date>] [--page-size N] [--dry-run]`: catch-up from the Altinn Events
//! pull API by hand ([`crate::pipeline::catchup`]), whatever `EventsCatchUp` says.
//!
//! Same settings as the `EventsReconciler` timer; events go to the inbound queue on
//! `QueueStorageSettings__ConnectionString` and each app's cursor moves in `aos-state` only
//! after its page's events are stored. `--dry-run` queues nothing and moves no cursor. Progress
//! goes to stderr; refused events, warnings, one line per app and the summary to stdout.

use std::time::Instant;

use super::error::CliError;
use super::settings::{SettingsFrom, load_settings};
use crate::domain::Printable;
use crate::pipeline::Pipeline;
use crate::pipeline::catchup::{CatchUpOptions, EventSink};
use crate::queue::QueueAccount;
use crate::redact::redact;

#[derive(clap::Args)]
pub struct Args {
    /// Start for an app without a cursor (RFC 3339, or a date `YYYY-MM-DD`); default:
    /// the setting EventsCatchUpFrom, else one day ago.
    #[arg(long)]
    from: Option<String>,
    /// Events per page (1–1000).
    #[arg(long)]
    page_size: Option<usize>,
    /// Report what would be queued; queue nothing and move no cursor.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as one JSON object (apps, summary, wouldQueue) instead of lines;
    /// progress stays on stderr.
    #[arg(long)]
    json: bool,
}

/// Runs one catch-up and prints its summary; events that could not be queued make it fail
/// (exit 1) after the summary.
pub async fn run(args: Args, from: &SettingsFrom) -> Result<(), CliError> {
    catch_up(args, from)
        .await
        .map_err(|e| e.name_failures("catch-up"))
}

async fn catch_up(args: Args, from: &SettingsFrom) -> Result<(), CliError> {
    let settings = load_settings(from)?;
    let mut options = CatchUpOptions::from_settings(&settings.catch_up);
    if let Some(from) = &args.from {
        options.first_from = crate::config::parse_time(from).ok_or_else(|| {
            CliError::usage(format!(
                "--from `{from}` is neither an RFC 3339 time nor a YYYY-MM-DD date"
            ))
        })?;
    }
    if let Some(size) = args.page_size {
        if !(1..=1000).contains(&size) {
            return Err(CliError::usage("--page-size must be 1 to 1000"));
        }
        options.page_size = size;
    }
    if settings.reconcile_apps.is_empty() {
        return Err(CliError::usage(
            "setting AltinnApplicationOwnerSystemSettings__ReconcileApps: is required by \
             `aos catch-up` (the Events pull API is per app)",
        ));
    }
    let inbound = if args.dry_run {
        None
    } else {
        let account =
            QueueAccount::from_settings(&settings.queues, "`aos catch-up` (or use --dry-run)")?;
        let queue = account
            .existing_queue(&settings.queues.inbound)
            .await
            .map_err(CliError::dependency)?;
        Some(queue)
    };
    let pipeline = Pipeline::from_settings(settings).await?;

    let started = Instant::now();
    let mut would_queue = Vec::new();
    let mut progress = |line: String| {
        let line = Printable(&redact(&line)).to_string();
        match line.strip_prefix("would queue ") {
            Some(source) if args.json => would_queue.push(source.to_string()),
            Some(_) => println!("{line}"),
            None => eprintln!("{line}"),
        }
    };
    let sink = inbound.as_ref().map(|q| q as &dyn EventSink);
    let run = pipeline
        .catch_up(&options, sink, &mut progress)
        .await
        .map_err(CliError::usage)?;
    if args.dry_run {
        eprintln!("dry run: nothing was queued and no cursor moved");
    }
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let out = serde_json::json!({
            "dryRun": args.dry_run,
            "apps": run.apps,
            "summary": run.summary_json(),
            "wouldQueue": would_queue,
            "seconds": seconds,
        });
        println!("{}", redact(&out.to_string()));
    } else {
        for app in &run.apps {
            for reason in &app.reasons {
                println!("refused: {}", Printable(&redact(reason)));
            }
            for warning in &app.warnings {
                println!("warning: {}", Printable(&redact(warning)));
            }
            println!("{}", Printable(&redact(&app.to_string())));
        }
        if run.truncated {
            println!(
                "stopped at {} events; run again to continue",
                options.max_events
            );
        }
        println!("{run} ({seconds:.1} s)");
    }
    let unreachable = |app: &crate::pipeline::catchup::AppReport| {
        app.failed
            .as_deref()
            .is_some_and(|why| crate::cause::is_unreachable(anyhow::anyhow!("{why}").as_ref()))
    };
    if run.all_failed() && run.apps.iter().all(unreachable) {
        return Err(CliError::unreachable(
            "Altinn or storage could not be reached for any app; no cursor moved",
        ));
    }
    if run.failed() == 0 {
        Ok(())
    } else {
        Err(CliError::Reported)
    }
}

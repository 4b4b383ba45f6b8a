//! `aos catch-up [--from <date>] [--page-size N] [--dry-run]`: catch-up from the Altinn Events
//! pull API by hand ([`crate::pipeline::catchup`]), whatever `EventsCatchUp` says.
//!
//! Same settings as the `EventsReconciler` timer; events go to the inbound queue on
//! `QueueStorageSettings__ConnectionString` and each app's cursor moves in `aos-state` only
//! after its page's events are stored. `--dry-run` queues nothing and moves no cursor. Progress
//! goes to stderr; refused events, warnings, one line per app and the summary to stdout.

use std::time::Instant;

use crate::config::{SettingSource, Settings};
use crate::pipeline::Pipeline;
use crate::pipeline::catchup::{CatchUp, CatchUpOptions, EventSink};
use crate::queue::Queue;
use crate::reconcile_cli::CliError;
use crate::storage::StorageEndpoint;

/// Command-line choices.
#[derive(Clone, Debug, Default)]
pub struct Args {
    /// Start for apps without a cursor (overrides `EventsCatchUpFrom`).
    pub from: Option<String>,
    pub page_size: Option<usize>,
    pub dry_run: bool,
}

/// Runs one catch-up and prints its summary.
pub async fn run(args: Args) -> Result<CatchUp, CliError> {
    let source = SettingSource::from_process().map_err(|e| CliError::Usage(e.to_string()))?;
    let settings = Settings::from_source(&source).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut options = CatchUpOptions::from_settings(&settings.catch_up);
    if let Some(from) = &args.from {
        options.first_from = crate::config::parse_time(from).ok_or_else(|| {
            CliError::Usage(format!(
                "--from `{from}` is neither an RFC 3339 time nor a YYYY-MM-DD date"
            ))
        })?;
    }
    if let Some(size) = args.page_size {
        if !(1..=1000).contains(&size) {
            return Err(CliError::Usage("--page-size must be 1 to 1000".into()));
        }
        options.page_size = size;
    }
    if settings.reconcile_apps.is_empty() {
        return Err(CliError::Usage(
            "setting AltinnApplicationOwnerSystemSettings__ReconcileApps: is required by \
             `aos catch-up` (the Events pull API is per app)"
                .into(),
        ));
    }
    let inbound = if args.dry_run {
        None
    } else {
        let connection = settings.queues.connection.clone().ok_or_else(|| {
            CliError::Usage(
                "setting QueueStorageSettings__ConnectionString (or its identity-based \
                 __queueServiceUri form): is required by `aos catch-up` (or use --dry-run)"
                    .into(),
            )
        })?;
        let storage = StorageEndpoint::for_queue_connection(&connection)
            .map_err(|e| CliError::Usage(format!("QueueStorageSettings__ConnectionString: {e}")))?;
        let queue = Queue::new(&storage, &settings.queues.inbound)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        queue
            .ensure_exists()
            .await
            .map_err(|e| CliError::Failed(format!("queue {}: {e}", queue.name())))?;
        Some(queue)
    };
    let pipeline = Pipeline::from_settings(settings)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;

    let started = Instant::now();
    let mut progress = |line: String| {
        if line.starts_with("would queue ") {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    let sink = inbound.as_ref().map(|q| q as &dyn EventSink);
    let run = pipeline
        .catch_up(&options, sink, &mut progress)
        .await
        .map_err(CliError::Usage)?;
    for app in &run.apps {
        for reason in &app.reasons {
            println!("refused: {reason}");
        }
        for warning in &app.warnings {
            println!("warning: {warning}");
        }
        println!("{app}");
    }
    if args.dry_run {
        eprintln!("dry run: nothing was queued and no cursor moved");
    }
    if run.truncated {
        println!(
            "stopped at {} events; run again to continue",
            options.max_events
        );
    }
    println!("{run} ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(run)
}

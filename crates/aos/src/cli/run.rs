//! `aos run`: the same steps without Azure Functions ([`crate::standalone`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::CliError;
use super::settings::{SettingsFrom, load_settings};
use crate::pipeline::Pipeline;
use crate::standalone::RunOptions;

#[derive(clap::Args)]
pub struct Args {
    /// Address the webhook listens on.
    #[arg(long, default_value = "127.0.0.1:7071")]
    listen: SocketAddr,
    /// Messages worked on at once, per queue.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds a failed message waits before its next attempt.
    #[arg(long, default_value_t = 30)]
    retry_delay_secs: u64,
    /// Seconds a received message stays hidden (renewed while it is worked on).
    #[arg(long, default_value_t = 60)]
    lease_secs: u64,
}

/// Runs the webhook and the workers until Ctrl-C or SIGTERM, then lets in-flight messages
/// finish. A setting `aos run` needs (the webhook secret, the queue connection) is a usage
/// error, like every other setting.
pub async fn run(args: Args, from: &SettingsFrom) -> Result<(), CliError> {
    let mut pipeline = Pipeline::from_settings(load_settings(from)?).await?;
    let mut options = RunOptions {
        listen: args.listen,
        ..RunOptions::default()
    };
    options.worker.concurrency = args.concurrency;
    options.worker.retry_delay = Duration::from_secs(args.retry_delay_secs);
    // The lease is renewed every third of it: at least 3 s keeps that a second or more (never
    // zero, which `tokio::time::interval` refuses).
    options.worker.lease = Duration::from_secs(args.lease_secs.max(3));
    pipeline.max_attempts = options.worker.max_dequeue_count;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight messages");
        trigger.cancel();
    });
    crate::standalone::run(pipeline, options, shutdown)
        .await
        .map_err(CliError::usage)
}

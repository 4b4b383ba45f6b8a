//! The standalone runtime (`aos run`): the same steps without the Functions host.
//!
//! A webhook ([`webhook`], served by [`server`] with a header read timeout) at the same path as
//! under Functions, `/api/EventsReceiver`, secured by `?code=` =
//! `AltinnApplicationOwnerSystemSettings__WebhookSecret` and limited at the edge (body size,
//! slow clients, concurrent requests), and queue workers
//! ([`worker`]) that drive the pipeline from Azure Storage queues with the host's semantics:
//! base64 message text, a renewed visibility lease while a message is worked on, the dequeue
//! count, `<queue>-poison` after the last attempt. Messages are interchangeable with the
//! Functions host's, so a deployment can move between the two with messages in flight.

mod server;
pub mod webhook;
pub mod worker;

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::SettingsError;
use crate::pipeline::Pipeline;
use crate::pipeline::messages::QueueStep;
use crate::queue::{QueueAccount, poison_queue_name};

pub use worker::WorkerConfig;

/// How `aos run` runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub listen: SocketAddr,
    pub worker: WorkerConfig,
}

/// Runs the webhook and the workers until `shutdown` is cancelled, then stops taking work,
/// lets in-flight messages finish (or releases them) and returns.
pub async fn run(
    pipeline: Pipeline,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = pipeline.settings.clone();
    let secret = settings
        .webhook_secret
        .clone()
        .ok_or_else(|| SettingsError {
            name: crate::config::aos("WebhookSecret"),
            problem: "is required by `aos run` (the webhook's ?code= secret)".into(),
        })?;
    let account = QueueAccount::from_settings(&settings.queues, "`aos run`")?;
    // Each step's queue and its `<queue>-poison`, created when missing.
    let mut queues = Vec::new();
    for step in QueueStep::ALL {
        let queue = account.existing_queue(pipeline.queue_of(step)).await?;
        let poison = account
            .existing_queue(&poison_queue_name(queue.name()))
            .await?;
        queues.push((step, queue, poison));
    }
    let queue_for = |step: QueueStep| {
        queues
            .iter()
            .find(|(s, _, _)| *s == step)
            .map(|(_, queue, _)| queue.clone())
    };
    let inbound = queue_for(QueueStep::Process).expect("every step has a queue");

    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let limits = webhook::EdgeLimits::from_env();
    tracing::info!(addr = %listener.local_addr()?, ?limits, "webhook listening on /api/EventsReceiver");
    let app = webhook::router(
        webhook::WebhookState::new(pipeline.clone(), secret, inbound, &limits),
        &limits,
    );
    let server = tokio::spawn(server::serve(
        listener,
        app,
        limits.header_timeout,
        shutdown.clone(),
    ));

    // One worker per step, passing its output on to the next step's queue ([`QueueStep::next`]).
    // The feedback worker runs even when feedback is off, so messages already in
    // `events-feedback` are handled.
    let workers: Vec<_> = queues
        .iter()
        .map(|(step, queue, poison)| {
            tokio::spawn(worker::run_worker(
                pipeline.clone(),
                *step,
                queue.clone(),
                poison.clone(),
                step.next(&settings).and_then(queue_for),
                options.worker.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    let sampler = tokio::spawn(sample_gauges(pipeline.clone(), shutdown.clone()));
    let (server, workers) = tokio::join!(server, futures::future::join_all(workers));
    sampler.abort();
    server?;
    for worker in workers {
        worker?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Samples the metrics' gauges every [`crate::metrics::sample_interval`] until shutdown (only
/// when metrics are on).
async fn sample_gauges(pipeline: Pipeline, shutdown: CancellationToken) {
    if !crate::metrics::enabled() {
        return;
    }
    let mut interval = tokio::time::interval(crate::metrics::sample_interval());
    loop {
        tokio::select! {
            _ = interval.tick() => pipeline.sample_gauges().await,
            () = shutdown.cancelled() => return,
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 7071)),
            worker: WorkerConfig::default(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            lease: Duration::from_secs(60),
            retry_delay: Duration::from_secs(30),
            max_dequeue_count: 5,
            max_idle_poll: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

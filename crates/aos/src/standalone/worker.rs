//! A queue worker: receive, run one pipeline step per message, settle the message.
//!
//! Semantics follow the Functions host's queue trigger so both runtimes behave alike:
//! a message is leased (hidden) while it is worked on and the lease is renewed; success
//! forwards the step's output and deletes the message; failure makes it visible again after
//! `retry_delay`, and the attempt whose dequeue count reaches `max_dequeue_count` moves it to
//! `<queue>-poison` unchanged. Concurrency is bounded by a semaphore. On shutdown no new
//! messages are taken; in-flight ones get `shutdown_grace` to finish and are otherwise released
//! (made visible at once) — nothing is deleted that was not done.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::correlation::{Correlation, record_event};
use crate::functions::{EVENTS_CONFIRMATION, EVENTS_FEEDBACK, EVENTS_PROCESSOR};
use crate::pipeline::Pipeline;
use crate::pipeline::error::StepError;
use crate::pipeline::messages::{Attempt, QueueStep, describe, parse_message};
use crate::queue::{Leased, Queue};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Messages worked on at once (the host's default is 24 per function).
    pub concurrency: usize,
    /// How long a received message stays hidden; renewed every third of it.
    pub lease: Duration,
    /// How long a failed message stays hidden before its next attempt.
    pub retry_delay: Duration,
    /// Attempts before a message is moved to `<queue>-poison` (the host's default is 5).
    pub max_dequeue_count: u32,
    /// Longest pause between polls of an empty queue.
    pub max_idle_poll: Duration,
    /// How long in-flight messages may finish after shutdown is requested.
    pub shutdown_grace: Duration,
}

/// Where a step's output goes and where failures end.
#[derive(Clone)]
struct Settle {
    queue: Queue,
    poison: Queue,
    next: Option<Queue>,
}

pub async fn run_worker(
    pipeline: Pipeline,
    step: QueueStep,
    queue: Queue,
    poison: Queue,
    next: Option<Queue>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) {
    let settle = Settle {
        queue,
        poison,
        next,
    };
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let hard_stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut idle = Duration::from_millis(50);

    while !shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let free = permits.available_permits();
        if free == 0 {
            tokio::select! {
                _ = tasks.join_next() => continue,
                () = shutdown.cancelled() => break,
            }
        }
        let lease_secs = config.lease.as_secs().max(1) as u32;
        let batch = tokio::select! {
            batch = settle.queue.receive(free.min(32) as u8, lease_secs) => batch,
            () = shutdown.cancelled() => break,
        };
        match batch {
            Ok(messages) if !messages.is_empty() => {
                idle = Duration::from_millis(50);
                for message in messages {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let (pipeline, settle, config, hard_stop) = (
                        pipeline.clone(),
                        settle.clone(),
                        config.clone(),
                        hard_stop.clone(),
                    );
                    tasks.spawn(async move {
                        handle(&pipeline, step, &settle, message, &config, hard_stop).await;
                        drop(permit);
                    });
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(queue = settle.queue.name(), error = %e, "receiving messages failed")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(idle) => {},
            () = shutdown.cancelled() => break,
        }
        idle = (idle * 2).min(config.max_idle_poll);
    }

    // Shutdown: let in-flight work finish, then release whatever is still running.
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            queue = settle.queue.name(),
            in_flight = tasks.len(),
            "releasing unfinished messages for redelivery"
        );
        hard_stop.cancel();
        while tasks.join_next().await.is_some() {}
    }
}

/// Works one message to a settled state: forwarded and deleted, retried later, poisoned, or
/// released on hard stop.
async fn handle(
    pipeline: &Pipeline,
    step: QueueStep,
    settle: &Settle,
    mut message: Leased,
    config: &WorkerConfig,
    hard_stop: CancellationToken,
) {
    let queue = &settle.queue;
    let Some(text) = message.text.clone() else {
        tracing::error!(queue = queue.name(), message_id = %message.id, "message text is not base64; moving it to poison");
        poison(settle, &message).await;
        return;
    };
    if message.dequeue_count > config.max_dequeue_count {
        poison(settle, &message).await;
        return;
    }
    let lease_secs = config.lease.as_secs().max(1) as u32;
    // One message is one invocation ([`crate::correlation`]): a new invocation id, the event's
    // trace, and the span named by the function that runs the step under the host.
    let parsed = parse_message(&text);
    let correlation = match &parsed {
        Ok(event) => Correlation::fresh().for_event(event),
        Err(_) => Correlation::fresh(),
    };
    let span = correlation.span(function_of(step));
    if let Ok(event) = &parsed {
        record_event(&span, event, &pipeline.settings.apps_base_url);
    }
    let outcome = {
        let attempt = Attempt::of(message.dequeue_count, config.max_dequeue_count);
        let work = async {
            let event = parsed?;
            let report = pipeline.run_step_recorded(step, &event, attempt).await?;
            Ok::<_, StepError>((event, report))
        };
        let work = crate::correlation::scope(correlation, span.clone(), work);
        tokio::pin!(work);
        let mut renew = tokio::time::interval(config.lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut work => break Some(result),
                _ = renew.tick() => {
                    if let Err(e) = queue.set_visibility(&mut message, lease_secs).await {
                        tracing::warn!(queue = queue.name(), error = %e, "could not renew the lease");
                    }
                }
                () = hard_stop.cancelled() => break None,
            }
        }
    };
    // The outcome's lines belong to the invocation too.
    async {
    match outcome {
        None => {
            if let Err(e) = queue.set_visibility(&mut message, 0).await {
                tracing::warn!(queue = queue.name(), error = %e, "could not release the message; it reappears when its lease ends");
            }
        }
        Some(Ok((event, report))) => {
            tracing::info!(
                queue = queue.name(),
                attempt = message.dequeue_count,
                "{}",
                report.line
            );
            if let (Some(next), Some(forward)) = (&settle.next, &report.forward)
                && let Err(e) = next.send(&forward.message_text()).await
            {
                tracing::error!(queue = queue.name(), error = %e, "{}: could not forward; will retry", describe(&event));
                retry_later(settle, &mut message, config).await;
                return;
            }
            if let Err(e) = queue.delete(&message).await {
                tracing::warn!(queue = queue.name(), error = %e, "could not delete a finished message; it will be processed again (idempotent)");
            }
        }
        Some(Err(e)) => {
            let kind = e.kind().label();
            tracing::error!(queue = queue.name(), attempt = message.dequeue_count, kind, error = %e, "step failed");
            retry_later(settle, &mut message, config).await;
        }
    }
    }
    .instrument(span)
    .await;
}

async fn retry_later(settle: &Settle, message: &mut Leased, config: &WorkerConfig) {
    if message.dequeue_count >= config.max_dequeue_count {
        poison(settle, message).await;
    } else if let Err(e) = settle
        .queue
        .set_visibility(message, config.retry_delay.as_secs() as u32)
        .await
    {
        tracing::warn!(queue = settle.queue.name(), error = %e, "could not schedule the retry; it reappears when its lease ends");
    }
}

async fn poison(settle: &Settle, message: &Leased) {
    match settle.queue.move_to(message, &settle.poison).await {
        Ok(()) => {
            tracing::error!(queue = settle.queue.name(), poison = settle.poison.name(), message_id = %message.id, attempts = message.dequeue_count, "message moved to poison")
        }
        Err(e) => {
            tracing::error!(queue = settle.queue.name(), error = %e, "could not move a message to poison")
        }
    }
}

/// The function that runs `step` under the Functions host: the name log lines carry in both
/// runtimes.
fn function_of(step: QueueStep) -> &'static str {
    match step {
        QueueStep::Process => EVENTS_PROCESSOR,
        QueueStep::Feedback => EVENTS_FEEDBACK,
        QueueStep::Confirm => EVENTS_CONFIRMATION,
    }
}

//! Push delivery shaped like Altinn Events' outbound webhook (spec §2.3,
//! §2.5): one POST per (event, subscription) with the CloudEvent as a JSON
//! body, `Content-Type: application/json; charset=utf-8` and no auth header.
//! A 2xx answer is delivered; any other status, a connection error or a
//! timeout is a failed attempt, retried after the next delay of the retry
//! schedule. After `schedule.len() + 1` failed attempts the pair is
//! dead-lettered and never sent again.
//!
//! Every delivery runs in its own Tokio task, so request handlers only queue
//! and never wait, and deliveries are independent (own retries, no ordering),
//! as in Altinn. This module knows nothing about subscriptions: callers say
//! what to send where, and pass closures for "is it still wanted" and "it was
//! delivered". Every delivery ends: attempts are capped by the schedule and
//! each attempt by the timeout. `SimulatorHandle::shutdown` stops only the
//! listener; queued deliveries run to their end or until the runtime stops.

use std::error::Error as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::state::lock;

/// Altinn's documented schedule (spec §2.3): retries after 10 s, 30 s, 1 min,
/// 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, 12 h, i.e. 12 attempts in
/// about 35 h. Pass it to `set_push_retry_schedule` to simulate production
/// timing (with a paused Tokio clock, or for long-running dev sessions).
pub fn altinn_retry_schedule() -> Vec<Duration> {
    [
        10,
        30,
        60,
        300,
        600,
        1800,
        3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        12 * 3600,
    ]
    .into_iter()
    .map(Duration::from_secs)
    .collect()
}

/// Default retry delays: Altinn's shape, compressed so a test sees the whole
/// life of a failing delivery (6 attempts) within about 9 s.
fn default_schedule() -> Vec<Duration> {
    [100, 500, 1000, 2000, 5000]
        .into_iter()
        .map(Duration::from_millis)
        .collect()
}

/// Default per-attempt timeout. Altinn allows 45 s; 10 s keeps a hanging test
/// webhook from stalling a test run for long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on the retry schedule length, so a mistaken huge schedule
/// cannot keep a delivery alive forever (Altinn itself stops at 12 attempts).
pub(crate) const MAX_RETRIES: usize = 64;

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// One push attempt, recorded when it finished.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub subscription_id: u64,
    /// The CloudEvent `id` (the same on every attempt of one delivery).
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt of this (event, subscription) pair.
    pub attempt: u32,
    /// The HTTP status, if the endpoint answered at all.
    pub status: Option<u16>,
    /// Why there is no status: connection error, timeout, bad URL.
    pub error: Option<String>,
    /// When the attempt started.
    pub at: Instant,
}

impl Delivery {
    /// Whether this attempt delivered the event (any 2xx).
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What to deliver, and the hooks tying a delivery to its subscription.
pub(crate) struct Job {
    pub subscription_id: u64,
    pub endpoint: String,
    pub body: Bytes,
    pub event_id: String,
    pub event_type: String,
    /// Checked before every attempt; `false` ends the delivery silently
    /// (the subscription was deleted).
    pub wanted: Box<dyn Fn() -> bool + Send + Sync>,
    /// Runs once after a 2xx answer (e.g. marks a subscription validated).
    pub on_delivered: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// Timing of a delivery, fixed when it is queued: changing the settings
/// affects later deliveries only, so a running test is not disturbed.
#[derive(Clone)]
struct Plan {
    schedule: Vec<Duration>,
    timeout: Duration,
}

struct Shared {
    /// The runtime the simulator was started on; deliveries are spawned
    /// there even when queued from a thread outside it.
    runtime: Option<Handle>,
    /// Built on first use so a (rare) TLS-initialisation failure becomes a
    /// recorded failed attempt instead of a panic at start.
    client: OnceLock<Result<reqwest::Client, String>>,
    plan: Mutex<Plan>,
    deliveries: Mutex<Vec<Delivery>>,
    dead_letters: Mutex<Vec<(u64, String)>>,
    /// Deliveries queued and not yet finished (waiting to retry or in flight).
    outstanding: watch::Sender<usize>,
}

impl Shared {
    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                // No proxy: a proxy from the environment must not intercept
                // pushes to loopback webhooks.
                reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .map_err(|e| format!("building push client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// One POST; returns `(status, error)`, exactly one of them set.
    async fn attempt(&self, job: &Job, timeout: Duration) -> (Option<u16>, Option<String>) {
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return (None, Some(e)),
        };
        let sent = client
            .post(job.endpoint.as_str())
            .header(CONTENT_TYPE, JSON_UTF8)
            .body(job.body.clone())
            .timeout(timeout)
            .send()
            .await;
        match sent {
            // The body is ignored, as in Altinn; dropping it closes the stream.
            Ok(resp) => (Some(resp.status().as_u16()), None),
            Err(e) if e.is_timeout() => (None, Some(format!("timed out after {timeout:?}"))),
            Err(e) => (None, Some(error_chain(&e))),
        }
    }
}

/// `e` with its sources, e.g. "error sending request: … Connection refused".
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Counts a delivery as outstanding for as long as it lives; dropping it
/// (task finished, cancelled, or its runtime shut down) releases the count.
struct Outstanding(Arc<Shared>);

impl Outstanding {
    fn new(shared: Arc<Shared>) -> Self {
        shared.outstanding.send_modify(|n| *n += 1);
        Self(shared)
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The delivery engine of one simulator.
pub(crate) struct Pusher {
    shared: Arc<Shared>,
}

impl Pusher {
    /// Must be created on the runtime that should run the deliveries (the
    /// simulator is started from async code, so it is).
    pub(crate) fn new() -> Self {
        let (outstanding, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                runtime: Handle::try_current().ok(),
                client: OnceLock::new(),
                plan: Mutex::new(Plan {
                    schedule: default_schedule(),
                    timeout: DEFAULT_TIMEOUT,
                }),
                deliveries: Mutex::new(Vec::new()),
                dead_letters: Mutex::new(Vec::new()),
                outstanding,
            }),
        }
    }

    /// Starts delivering `job` in the background; returns at once. The job
    /// counts as outstanding from this call on, so a `wait_idle` right after
    /// `queue` waits for it.
    pub(crate) fn queue(&self, job: Job) {
        let guard = Outstanding::new(self.shared.clone());
        let plan = lock(&self.shared.plan).clone();
        match &self.shared.runtime {
            Some(runtime) => {
                runtime.spawn(deliver(self.shared.clone(), job, plan, guard));
            }
            None => tracing::error!(
                subscription = job.subscription_id,
                event = %job.event_id,
                "simulator push dropped: no Tokio runtime to run it on"
            ),
        }
    }

    /// Replaces the retry delays (at most [`MAX_RETRIES`] are used).
    pub(crate) fn set_schedule(&self, mut schedule: Vec<Duration>) {
        if schedule.len() > MAX_RETRIES {
            tracing::warn!(
                len = schedule.len(),
                max = MAX_RETRIES,
                "push retry schedule truncated"
            );
            schedule.truncate(MAX_RETRIES);
        }
        lock(&self.shared.plan).schedule = schedule;
    }

    pub(crate) fn set_timeout(&self, timeout: Duration) {
        lock(&self.shared.plan).timeout = timeout;
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.shared.deliveries).clone()
    }

    pub(crate) fn dead_letters(&self) -> Vec<(u64, String)> {
        lock(&self.shared.dead_letters).clone()
    }

    /// Waits until no delivery is outstanding; `false` if `timeout` passed
    /// first.
    pub(crate) async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut idle = self.shared.outstanding.subscribe();
        matches!(
            tokio::time::timeout(timeout, idle.wait_for(|n| *n == 0)).await,
            Ok(Ok(_))
        )
    }
}

/// The life of one (event, subscription) delivery: attempt, record, wait the
/// next delay, until delivered, cancelled, or out of attempts.
async fn deliver(shared: Arc<Shared>, mut job: Job, plan: Plan, _outstanding: Outstanding) {
    let mut delays = plan.schedule.iter();
    let mut attempt: u32 = 0;
    loop {
        if !(job.wanted)() {
            tracing::debug!(
                subscription = job.subscription_id,
                event = %job.event_id,
                "push cancelled: subscription deleted"
            );
            return;
        }
        attempt += 1;
        let at = Instant::now();
        let (status, error) = shared.attempt(&job, plan.timeout).await;
        let record = Delivery {
            subscription_id: job.subscription_id,
            event_id: job.event_id.clone(),
            event_type: job.event_type.clone(),
            attempt,
            status,
            error,
            at,
        };
        let delivered = record.delivered();
        tracing::debug!(?record, "simulator push attempt");
        lock(&shared.deliveries).push(record);
        if delivered {
            if let Some(on_delivered) = job.on_delivered.take() {
                on_delivered();
            }
            return;
        }
        match delays.next() {
            Some(delay) => tokio::time::sleep(*delay).await,
            None => break,
        }
    }
    tracing::warn!(
        subscription = job.subscription_id,
        event = %job.event_id,
        attempts = attempt,
        "simulator push dead-lettered"
    );
    lock(&shared.dead_letters).push((job.subscription_id, job.event_id));
}

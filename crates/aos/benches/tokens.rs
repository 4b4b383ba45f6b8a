//! Benchmark 5 (issue 8): token efficiency — Maskinporten grants and Altinn token exchanges
//! per 10,000 events.
//!
//! The real grant + exchange path: `aos serve` configured with a Maskinporten client (a
//! test-only certificate registered with the simulator's Maskinporten) and no fixed Altinn
//! token. 10,000 host-shaped `EventsProcessor` invocations (queue-trigger payloads) for 100
//! tiny instances without data elements, each delivered 100 times: every invocation reads its
//! instance from the simulator's Storage with the exchanged token; the first delivery archives
//! it in Azurite, the later ones find it archived (one manifest read). Thousands of distinct
//! instances would measure Azurite, which slows down as its blob count grows, not the tokens. Run twice: with the default Altinn token
//! lifetime (30 min) and with a short one (5 s); the simulator counts grants and exchanges.
//!
//! `cargo bench --bench tokens [-- --quick] [-- --no-write]`.

#[allow(unused_imports)]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aos_testkit::GroupChild;
use aos_testkit::app::FunctionApp;
use aos_testkit::invocation::{QueueMessageInfo, SysInfo, queue_request};
use aos_testkit::world::{Backends, instance};
use common::http;
use common::report::Report;
use common::{BenchArgs, percentile};
use serde_json::Value;
use time::OffsetDateTime;

const CONCURRENCY: usize = 16;
/// Distinct instances per run; each is delivered `events / INSTANCES` times.
const INSTANCES: usize = 100;
const SHORT_LIFETIME: Duration = Duration::from_secs(5);
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 60);

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

struct Run {
    lifetime: Duration,
    events: usize,
    elapsed: Duration,
    grants: usize,
    exchanges: usize,
    authorized_storage_calls: usize,
    p50: Duration,
    p99: Duration,
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let events = if args.quick { 500 } else { 10_000 };
    let backends = Backends::start().await;
    let pki = aos_testkit::auth::Pki::new();
    backends.sim.register_client(
        aos_testkit::auth::CLIENT_ID,
        pki.client_key(),
        &aos_testkit::auth::SCOPES,
    );
    let key_dir = tempfile::tempdir()?;
    let p12 = pki.pkcs12(
        aos_testkit::auth::PASSWORD,
        p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
    );
    let key_path = aos_testkit::auth::write(key_dir.path(), "client.p12", &p12);
    let mut env = backends.settings_env();
    env.retain(|(name, _)| name != "AltinnApplicationOwnerSystemSettings__AltinnToken");
    env.extend(
        [
            (
                "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
                backends.sim.maskinporten_url().to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
                aos_testkit::auth::CLIENT_ID.to_string(),
            ),
            (
                aos_testkit::auth::CERT_PATH,
                key_path.to_string_lossy().into_owned(),
            ),
            (
                aos_testkit::auth::CERT_PASSWORD,
                aos_testkit::auth::PASSWORD.to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );

    let mut runs = Vec::new();
    for (n, lifetime) in [DEFAULT_LIFETIME, SHORT_LIFETIME].into_iter().enumerate() {
        backends.sim.set_altinn_token_lifetime(lifetime);
        // Fresh instances for each run, so both do the same work (a first archive).
        let requests = Arc::new(processor_requests(
            &backends,
            events,
            1_000_000 * (n as u64 + 1),
        )?);
        // A new process: no token cached from the previous run.
        let handler = start_handler(&env).await?;
        let before = counts(&backends);
        let started = Instant::now();
        let mut result =
            http::load(handler.1, requests, CONCURRENCY, events, 1, check_processed).await?;
        let elapsed = started.elapsed();
        drop(handler);
        if result.failures > 0 {
            bail!(
                "{} of {events} invocations failed, e.g. {}",
                result.failures,
                result.first_failure.as_deref().unwrap_or("?")
            );
        }
        let after = counts(&backends);
        let run = Run {
            lifetime,
            events,
            elapsed,
            grants: after.0 - before.0,
            exchanges: after.1 - before.1,
            authorized_storage_calls: after.2 - before.2,
            p50: percentile(&mut result.latencies, 50.0),
            p99: percentile(&mut result.latencies, 99.0),
        };
        println!(
            "lifetime {:?}: {} events in {:.1} s, {} grants, {} exchanges",
            lifetime,
            events,
            elapsed.as_secs_f64(),
            run.grants,
            run.exchanges
        );
        runs.push(run);
    }

    let mut report = Report::new("tokens", "Token efficiency", &args);
    report.section("Maskinporten grants and Altinn token exchanges");
    report.paragraph(&format!(
        "The real token path of `aos serve`: a Maskinporten JWT grant signed with a test-only \
         certificate (PKCS#12) registered with the simulator's Maskinporten, exchanged for an \
         Altinn token at the simulator's `/authentication/api/v1/exchange/maskinporten`; the \
         Altinn token is cached and refreshed when 90 % of its lifetime (at most 60 s before its \
         `exp`) has passed. Variant: {events} events through the processor — host-shaped \
         `EventsProcessor` queue-trigger invocations, {CONCURRENCY} at a time, for {INSTANCES} tiny \
         instances (no data elements) delivered {} times each: every invocation makes one \
         authenticated Storage read of its instance; the first delivery writes the instance JSON \
         and manifest to Azurite, later ones find the manifest and forward the event. (Distinct \
         instances for all 10,000 events made Azurite, which slows as its blob count grows, the \
         bottleneck: under 10 events/s on the shared machine.) Every invocation must succeed and \
         forward the event to `confirmation`. Each run is a new `aos serve` process (nothing \
         cached). Expected: one grant and one exchange per token lifetime, \
         `ceil(run time / lifetime)`; with the refresh margin, `ceil(run time / (0.9 × \
         lifetime))` is the most a correct cache does. Target: one per token lifetime.",
        events / INSTANCES.min(events)
    ));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let t = r.elapsed.as_secs_f64();
            let lifetime = r.lifetime.as_secs_f64();
            let per_10k = |n: usize| format!("{:.2}", n as f64 * 10_000.0 / r.events as f64);
            vec![
                format!("{} s", r.lifetime.as_secs()),
                r.events.to_string(),
                format!("{t:.1} s"),
                format!("{:.0}", r.events as f64 / t),
                format!("{:.1} ms", r.p50.as_secs_f64() * 1e3),
                format!("{:.1} ms", r.p99.as_secs_f64() * 1e3),
                r.authorized_storage_calls.to_string(),
                r.grants.to_string(),
                r.exchanges.to_string(),
                per_10k(r.exchanges),
                format!("{}", (t / lifetime).ceil() as u64),
                format!("{}", (t / (0.9 * lifetime)).ceil() as u64),
            ]
        })
        .collect();
    report.table(
        &[
            "Altinn token lifetime",
            "events",
            "run time",
            "events/s",
            "p50",
            "p99",
            "authorized Storage calls",
            "Maskinporten grants",
            "Altinn exchanges",
            "exchanges per 10,000 events",
            "expected ceil(run time / lifetime)",
            "at most ceil(run time / 0.9 lifetime)",
        ],
        &rows,
    );
    report.paragraph(
        "Grants and exchanges are counted by the simulator (`SimulatorHandle::grants`, \
         `exchanges`); authorized Storage calls are the simulator's recorded calls that carried \
         a token it accepts, excluding the Maskinporten and exchange endpoints. The token's \
         lifetime as the client sees it is `exp − now` with `exp` in whole seconds, so a 5 s \
         token arrives with 4–5 s left and is refreshed after 90 % of that (3.6–4.5 s): one \
         exchange more than `ceil(run time / 0.9 lifetime)` is the second-resolution `exp`, not \
         a wasted exchange.",
    );
    report.finish()
}

/// (grants, exchanges, authorized calls other than the token endpoints) so far.
fn counts(backends: &Backends) -> (usize, usize, usize) {
    let calls = backends
        .sim
        .calls()
        .iter()
        .filter(|c| c.authorized && !c.path.contains("/token") && !c.path.contains("/exchange/"))
        .count();
    (backends.sim.grants(), backends.sim.exchanges(), calls)
}

/// One `EventsProcessor` invocation per new tiny instance.
fn processor_requests(
    backends: &Backends,
    events: usize,
    first_party: u64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let app = FunctionApp::load(&aos_testkit::app_root())?;
    let def = app.function("EventsProcessor")?;
    let trigger = def
        .bindings
        .iter()
        .find(|b| b.kind.eq_ignore_ascii_case("queueTrigger"))
        .context("EventsProcessor has a queue trigger")?;
    let now = OffsetDateTime::now_utc();
    let instances: Vec<_> = (0..INSTANCES.min(events))
        .map(|i| {
            backends
                .sim
                .add_instance(instance(first_party + i as u64, Vec::new()))
        })
        .collect();
    (0..events)
        .map(|i| {
            let inst = &instances[i % instances.len()];
            let message = QueueMessageInfo {
                body: backends.sim.completed_event(inst).to_string().into_bytes(),
                dequeue_count: 1,
                id: uuid::Uuid::new_v4().to_string(),
                pop_receipt: "AgAAAAMAAAAAAAAA".into(),
                expiration_time: now + time::Duration::days(7),
                insertion_time: now,
                next_visible_time: now + time::Duration::minutes(10),
            };
            let payload = queue_request(trigger, &message, &SysInfo::now("EventsProcessor"))
                .map_err(anyhow::Error::msg)?;
            Ok(http::request(
                "POST",
                "/EventsProcessor",
                "application/json",
                payload.to_string().as_bytes(),
            ))
        })
        .collect()
}

fn check_processed(body: &[u8]) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(body)?;
    if !v["Outputs"]["confirmation"].is_object() {
        bail!("the event was not forwarded to confirmation: {v}");
    }
    Ok(())
}

/// `aos serve` as the Functions host starts it; returns it and its port.
async fn start_handler(env: &[(String, String)]) -> anyhow::Result<(GroupChild, u16)> {
    common::handler::start_handler(Path::new(env!("CARGO_BIN_EXE_aos")), env).await
}

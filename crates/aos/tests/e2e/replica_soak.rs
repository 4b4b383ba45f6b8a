//! Replica soak: three replicas of the product on the same queues and archive, with storage
//! faults (the test kit's storage proxy), Altinn faults (the simulator), one replica killed
//! and restarted every few seconds, one stopped gracefully mid-run, and the replicas' wall
//! clocks a few seconds apart. The end state must be exactly as without any of it: every
//! instance archived byte for byte and confirmed, no confirm before its verified archive,
//! poison holding only the instances given a permanent fault, and no blob in the archive
//! outside the instances' own names.
//!
//! Two runtimes: three `aos run` processes, and three Functions hosts (the harness) whose
//! handler processes are killed and restarted by their host.
//!
//! The default size keeps the suite within CI's limits; `AOS_SOAK_INSTANCES=1000` runs the
//! soak size, with elements up to 64 MiB (`docs/robustness.md` has the command and figures).
//!
//! Clock skew needs libfaketime (`apt-get install libfaketime`): the product takes the time
//! from the system and has no clock input of its own. Without the library the replicas run
//! on one clock and the figures line says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use altinn_sim::{CreatedInstance, ElementSpec, Fault as AltinnFault, FaultRule as AltinnRule};
use aos_testkit::host::FunctionsHost;
use aos_testkit::replicas::{
    archive_blob_names, clock_offset_bounds, clock_skew_env, kill_handler, post_event_via,
    start_host, terminate_handler,
};
use aos_testkit::standalone::Standalone;
use aos_testkit::storage_proxy::StorageProxy;
use aos_testkit::world::{Backends, TestApp, element, instance};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::OffsetDateTime;

const SEED: u64 = 20261215;
/// Instances in the default run, and the largest element then.
const DEFAULT_INSTANCES: usize = 150;
const DEFAULT_MAX_ELEMENT: u64 = 8 * MIB;
/// The soak size: `AOS_SOAK_INSTANCES` instances with elements up to 64 MiB.
const SOAK_ENV: &str = "AOS_SOAK_INSTANCES";
const SOAK_MAX_ELEMENT: u64 = 64 * MIB;
const MIB: u64 = 1024 * 1024;
/// Instances whose every Altinn request is refused with 403: the only ones allowed in poison.
const PERMANENT: usize = 2;
/// Each replica's clock offset from the machine's, in seconds.
const SKEW_SECS: [i64; 3] = [0, 3, -3];
/// How often a replica is killed (or, once, stopped gracefully) in the default run; the soak
/// size kills every 10 s (see [`Size::kill_every`]); `AOS_SOAK_KILL_EVERY_SECS` sets either.
const KILL_EVERY: Duration = Duration::from_secs(3);
const SOAK_KILL_EVERY: Duration = Duration::from_secs(10);
const KILL_EVERY_ENV: &str = "AOS_SOAK_KILL_EVERY_SECS";
/// `aos run` replicas are killed at least this often, even when the work finishes first.
const MIN_KILLS: u32 = 4;
/// `docs/robustness.md` rows these figures; one line, so a log search finds it.
const FIGURES: &str = "replica soak figures";

struct Size {
    instances: usize,
    max_element: u64,
    /// One in this many elements is over the block size (up to `max_element`).
    large_one_in: u32,
    kill_every: Duration,
}

/// The default size, or the soak size when `AOS_SOAK_INSTANCES` is set. A replica is killed
/// every [`Size::kill_every`], so each of the three lives three times that: an attempt that
/// takes longer (a 64 MiB element in a debug build on a busy machine) is cut every time, and
/// after five deliveries its message is in poison — the host's semantics, not a loss
/// (`aos poison replay` brings it back) — which is why the soak size kills less often.
fn size() -> Size {
    let soak = std::env::var(SOAK_ENV).ok().and_then(|v| v.parse().ok());
    let mut size = match soak {
        Some(instances) => Size {
            instances,
            max_element: SOAK_MAX_ELEMENT,
            large_one_in: 40,
            kill_every: SOAK_KILL_EVERY,
        },
        None => Size {
            instances: DEFAULT_INSTANCES,
            max_element: DEFAULT_MAX_ELEMENT,
            large_one_in: 16,
            kill_every: KILL_EVERY,
        },
    };
    if let Some(secs) = std::env::var(KILL_EVERY_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        size.kill_every = Duration::from_secs(secs);
    }
    size
}

/// The instances, the faults planned for them on the Altinn side, and what they weigh.
struct Workload {
    /// Instances that must end archived and confirmed.
    healthy: Vec<CreatedInstance>,
    /// Instances with a permanent fault: they must end in poison, unarchived, unconfirmed.
    permanent: Vec<CreatedInstance>,
    altinn_faults: BTreeMap<&'static str, u64>,
    elements: usize,
    bytes: u64,
}

impl Workload {
    /// `size.instances` instances of 0–3 elements: most small, a fifth up to 1.5 MiB, one in
    /// `size.large_one_in` over the 4 MiB block size up to `size.max_element` (the first one
    /// exactly that),
    /// so blocks, block lists and long downloads are all cut by kills and faults. Every
    /// healthy instance has one chance in two of an Altinn fault sized to recover within the
    /// retry budget.
    fn plan(backends: &Backends, size: &Size, party_base: u64, seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut altinn_faults = BTreeMap::new();
        let mut healthy = Vec::new();
        let mut large_done = false;
        for n in 0..size.instances as u64 {
            let elements: Vec<ElementSpec> = (0..rng.random_range(0..4u64))
                .map(|_| {
                    let bytes = if !large_done {
                        large_done = true;
                        size.max_element
                    } else if rng.random_ratio(1, size.large_one_in) {
                        rng.random_range(4 * MIB + 1..=size.max_element)
                    } else if rng.random_ratio(1, 5) {
                        rng.random_range(80_000..1_500_000)
                    } else {
                        rng.random_range(0..80_000)
                    };
                    element(bytes, Some("vedlegg.bin"))
                })
                .collect();
            let inst = backends
                .sim
                .add_instance(instance(party_base + n, elements));
            if let Some((kind, rule)) = altinn_fault(&mut rng, &inst) {
                backends.sim.inject(rule);
                *altinn_faults.entry(kind).or_insert(0) += 1;
            }
            healthy.push(inst);
        }
        let permanent: Vec<_> = (0..PERMANENT as u64)
            .map(|n| {
                let inst = backends.sim.add_instance(instance(
                    party_base + 500_000 + n,
                    vec![element(1000, Some("a.pdf"))],
                ));
                backends.sim.inject(AltinnRule {
                    path_contains: format!("/instances/{}", inst.instance_id()),
                    fault: AltinnFault::Status(403),
                    times: u32::MAX,
                });
                inst
            })
            .collect();
        *altinn_faults.entry("403 forever (permanent)").or_insert(0) += PERMANENT as u64;
        let all = healthy.iter().chain(&permanent);
        Workload {
            elements: all.clone().map(|i| i.elements.len()).sum(),
            bytes: all.flat_map(|i| &i.elements).map(|e| e.size).sum(),
            healthy,
            permanent,
            altinn_faults,
        }
    }

    fn healthy_ids(&self) -> HashSet<String> {
        self.healthy
            .iter()
            .map(CreatedInstance::instance_id)
            .collect()
    }

    /// Every event, the permanent ones spread among the healthy.
    fn events(&self, backends: &Backends) -> Vec<Value> {
        let mut events: Vec<Value> = self
            .healthy
            .iter()
            .map(|i| backends.sim.completed_event(i))
            .collect();
        for (n, inst) in self.permanent.iter().enumerate() {
            let at = (n + 1) * events.len() / (self.permanent.len() + 1);
            events.insert(at, backends.sim.completed_event(inst));
        }
        events
    }
}

/// One recoverable Altinn fault for `inst`, or none: 503 twice on the instance, 429 with
/// Retry-After on an element, an element's body cut off halfway, a slow instance read, or a
/// failed confirm.
fn altinn_fault(rng: &mut StdRng, inst: &CreatedInstance) -> Option<(&'static str, AltinnRule)> {
    let instance_path = format!("/instances/{}", inst.instance_id());
    let first = inst.elements.first();
    let data_path = first.map(|e| format!("/data/{}", e.id));
    let (kind, path_contains, fault, times) = match (rng.random_range(0..10), &data_path) {
        (0, _) => ("503 x2", instance_path, AltinnFault::Status(503), 2),
        (1, Some(data)) => (
            "429 Retry-After",
            data.clone(),
            AltinnFault::RetryAfter(1),
            1,
        ),
        (2, Some(data)) if first.is_some_and(|e| e.size > 10) => (
            "truncated body",
            data.clone(),
            AltinnFault::Truncate {
                after_bytes: first.map_or(0, |e| e.size / 2),
            },
            1,
        ),
        (3, _) => (
            "slow answer",
            instance_path,
            AltinnFault::Delay(Duration::from_millis(700)),
            1,
        ),
        (4, _) => (
            "failed confirm",
            format!("{instance_path}/complete"),
            AltinnFault::Status(500),
            1,
        ),
        _ => return None,
    };
    Some((
        kind,
        AltinnRule {
            path_contains,
            fault,
            times,
        },
    ))
}

/// Each replica's clock settings, or none when libfaketime is missing (said once, loudly).
fn skew_envs() -> Option<Vec<Vec<(String, String)>>> {
    let envs: Option<Vec<_>> = SKEW_SECS.iter().map(|s| clock_skew_env(*s)).collect();
    if envs.is_none() {
        eprintln!(
            "NOTE: libfaketime is not installed, so the replicas run WITHOUT clock skew \
             (apt-get install libfaketime, or set AOS_FAKETIME_LIB, to add it)"
        );
    }
    envs
}

/// Checks a replica's clock is off by what was asked (within the window its first log line
/// was written in), and returns the measured bounds for the figures.
fn check_skew(
    replica: usize,
    lines: &[String],
    started: OffsetDateTime,
    ready: OffsetDateTime,
) -> String {
    let wanted = SKEW_SECS[replica] as f64;
    let (low, high) = clock_offset_bounds(lines, started, ready)
        .unwrap_or_else(|| panic!("replica {replica} logged no time stamp: {lines:?}"));
    assert!(
        low - 0.5 <= wanted && wanted <= high + 0.5,
        "replica {replica} should run {wanted:+} s off; its log says {low:+.2}..{high:+.2} s"
    );
    format!("{low:+.1}..{high:+.1}s")
}

/// How many times the confirm of each healthy instance reached Altinn; panics on one never
/// confirmed (lost). Returns the confirms beyond the first.
fn confirms_beyond_the_first(backends: &Backends, workload: &Workload) -> usize {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in backends.sim.confirmations() {
        *counts.entry(c.instance_id).or_insert(0) += 1;
    }
    let lost: Vec<_> = workload
        .healthy_ids()
        .into_iter()
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert_eq!(lost, Vec::<String>::new(), "instances never confirmed");
    for inst in &workload.permanent {
        assert!(
            !counts.contains_key(&inst.instance_id()),
            "{} had a permanent fault yet was confirmed",
            inst.instance_id()
        );
    }
    counts.values().map(|n| n - 1).sum()
}

/// The instance of each message in `events-inbound-poison` (up to 32): the id of a
/// permanent-fault instance, or the `source` of any other event, marked as such.
async fn poisoned(backends: &Backends, workload: &Workload) -> Vec<String> {
    let texts = backends
        .azurite
        .queue_texts("events-inbound-poison")
        .await
        .unwrap();
    texts
        .iter()
        .map(|text| {
            let event: Value = serde_json::from_str(text).expect("poison holds events");
            let source = event["source"].as_str().unwrap_or_default();
            workload
                .permanent
                .iter()
                .map(CreatedInstance::instance_id)
                .find(|id| source.ends_with(id.as_str()))
                .unwrap_or_else(|| format!("not a permanent fault: {source}"))
        })
        .collect()
}

/// Waits until every healthy instance is confirmed and every permanent-fault instance is in
/// poison; fails at once when anything else reaches poison (it would never be confirmed).
async fn until_settled(backends: &Backends, workload: &Workload, size: &Size) {
    let wanted = workload.healthy_ids();
    let permanent: HashSet<String> = workload
        .permanent
        .iter()
        .map(CreatedInstance::instance_id)
        .collect();
    aos_testkit::poll_until(
        "every instance confirmed and the permanent faults in poison",
        patience(size),
        Duration::from_secs(1),
        || async {
            let poisoned = poisoned(backends, workload).await;
            let unexpected: Vec<_> = poisoned
                .iter()
                .filter(|p| !permanent.contains(*p))
                .collect();
            if !unexpected.is_empty() {
                anyhow::bail!(
                    "healthy instances in poison: {unexpected:?}; storage faults: {:?}",
                    backends.proxy().faults()
                );
            }
            let all_poisoned = permanent.iter().all(|id| poisoned.contains(id));
            Ok((all_poisoned && confirmed_share(backends, &wanted) >= 1.0).then_some(()))
        },
    )
    .await
    .unwrap();
}

/// Everything the soak expects of the end state. Returns the confirms beyond the first.
async fn assert_end_state(backends: &Backends, workload: &Workload) -> usize {
    assert_eq!(
        backends.sim.guard_violations(),
        Vec::<String>::new(),
        "a confirm came before its verified archive"
    );
    let duplicates = confirms_beyond_the_first(backends, workload);
    for inst in &workload.healthy {
        backends.assert_archived(inst).await;
    }

    // Poison holds exactly the instances given a permanent fault, once each.
    let queues = backends.azurite.queues();
    assert_eq!(
        queues
            .approximate_count("events-confirmation-poison")
            .await
            .unwrap(),
        0,
        "events-confirmation-poison: {:?}",
        backends
            .azurite
            .queue_texts("events-confirmation-poison")
            .await
    );
    let mut got = poisoned(backends, workload).await;
    got.sort();
    got.dedup();
    let mut wanted: Vec<String> = workload
        .permanent
        .iter()
        .map(CreatedInstance::instance_id)
        .collect();
    wanted.sort();
    assert_eq!(
        got, wanted,
        "events-inbound-poison holds the permanent faults and nothing else"
    );

    // The archive holds each healthy instance's own blobs and nothing else: no orphan, no
    // upload left half done, nothing of an instance that never archived.
    let mut expected = HashSet::new();
    for inst in &workload.healthy {
        let paths = backends.paths(inst);
        expected.insert(paths.instance_json());
        expected.insert(paths.manifest());
        expected.extend(inst.elements.iter().map(|e| paths.data(e.id)));
    }
    let listed = archive_blob_names(backends).await.unwrap();
    let orphans: Vec<_> = listed.iter().filter(|n| !expected.contains(*n)).collect();
    assert!(
        orphans.is_empty(),
        "blobs outside the instances' names: {orphans:?}"
    );
    assert_eq!(listed.len(), expected.len(), "one blob per expected name");
    duplicates
}

/// What a run did to the replicas, for the figures line.
struct Run<'a> {
    runtime: &'a str,
    kills: u32,
    graceful_stops: u32,
    /// Each replica's measured clock offset; empty without libfaketime.
    skew: Vec<String>,
    repeated_confirms: usize,
    /// From the first event to the last instance confirmed.
    drained: Duration,
    started: Instant,
}

/// The one line `docs/robustness.md` quotes; also checks faults of most kinds were injected.
fn print_figures(run: &Run, workload: &Workload, proxy: &StorageProxy) {
    let storage: BTreeMap<_, _> = proxy.faults().into_iter().filter(|(_, n)| *n > 0).collect();
    let requests: u64 = proxy.counts().values().sum();
    eprintln!(
        "{FIGURES} [{}]: instances={} (+{} permanent) elements={} bytes={} MiB, \
         storage requests={requests} storage faults={storage:?}, altinn faults={:?}, \
         kills={} graceful stops={}, clock skew={}, settled (all confirmed, permanent faults in poison) after {:.0}s, \
         duration with checks={:.0}s, lost=0, early confirms=0, repeated confirms={}, poisoned={} (all permanent)",
        run.runtime,
        workload.healthy.len(),
        workload.permanent.len(),
        workload.elements,
        workload.bytes / MIB,
        workload.altinn_faults,
        run.kills,
        run.graceful_stops,
        if run.skew.is_empty() {
            "off (no libfaketime)".to_string()
        } else {
            run.skew.join(" ")
        },
        run.drained.as_secs_f64(),
        run.started.elapsed().as_secs_f64(),
        run.repeated_confirms,
        workload.permanent.len(),
    );
    assert!(
        storage.len() >= 5,
        "storage faults of most kinds were injected: {storage:?}"
    );
}

/// How long to wait for every instance: generous, growing with the size.
fn patience(size: &Size) -> Duration {
    Duration::from_secs(120 + size.instances as u64 * size.max_element / MIB / 4)
}

/// Sleeps `period`, or less once `done` is set.
async fn pause(period: Duration, done: &AtomicBool) {
    let until = Instant::now() + period;
    while Instant::now() < until && !done.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn confirmed_share(backends: &Backends, wanted: &HashSet<String>) -> f64 {
    let confirmed: HashSet<String> = backends
        .sim
        .confirmations()
        .into_iter()
        .map(|c| c.instance_id)
        .filter(|id| wanted.contains(id))
        .collect();
    confirmed.len() as f64 / wanted.len().max(1) as f64
}

/// `aos run` with the replica's settings.
async fn start_replica(backends: &Backends, env: &[(String, String)]) -> Standalone {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Standalone::start_with_env(backends, &env).await
}

/// POSTs `event` to one of the live replicas, moving on to the next when one is down (killed,
/// restarting) or answers 503 (its queue write failed), as Altinn's retries would.
async fn post_to_some_replica(http: &reqwest::Client, ports: &Mutex<Vec<u16>>, event: &Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut turn = 0;
    loop {
        assert!(Instant::now() < deadline, "no replica took {event} in 60 s");
        let port = {
            let ports = ports.lock().unwrap();
            turn += 1;
            ports[turn % ports.len()]
        };
        if port == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let sent = http
            .post(format!(
                "http://127.0.0.1:{port}/api/EventsReceiver?code={}",
                aos_testkit::standalone::WEBHOOK_SECRET
            ))
            .header("content-type", "application/json; charset=utf-8")
            .body(event.to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 200 => return,
            Ok(response) if response.status() == 503 => {}
            Ok(response) => panic!(
                "a replica answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_aos_run_replicas_lose_nothing_while_killed_and_faulted() {
    let size = size();
    let backends = Backends::start_behind_proxy(SEED).await;
    let workload = Workload::plan(&backends, &size, 300_000, SEED);
    let skews = skew_envs();
    let envs = skews.clone().unwrap_or_else(|| vec![Vec::new(); 3]);
    backends.proxy().add_typical_faults();
    let started = Instant::now();

    let mut replicas = Vec::new();
    let mut skew_seen = Vec::new();
    for (n, env) in envs.iter().enumerate() {
        let before = OffsetDateTime::now_utc();
        let replica = start_replica(&backends, env).await;
        if skews.is_some() {
            skew_seen.push(check_skew(
                n,
                &replica.output(),
                before,
                OffsetDateTime::now_utc(),
            ));
        }
        replicas.push(replica);
    }
    let ports = Mutex::new(replicas.iter().map(|r| r.port).collect::<Vec<_>>());
    let done = AtomicBool::new(false);
    let wanted = workload.healthy_ids();

    // One replica at a time is SIGKILLed and started again, every few seconds; once half the
    // instances are confirmed, one is SIGTERMed instead and must exit cleanly.
    let chaos = async {
        let (mut kills, mut terms, mut turn) = (0u32, 0u32, 0usize);
        let mut outputs = Vec::new();
        while !done.load(Ordering::SeqCst) || kills < MIN_KILLS || terms == 0 {
            pause(size.kill_every, &done).await;
            let n = turn % replicas.len();
            turn += 1;
            ports.lock().unwrap()[n] = 0;
            let replica = &mut replicas[n];
            if terms == 0 && confirmed_share(&backends, &wanted) >= 0.5 {
                let status = replica.terminate(Duration::from_secs(40)).await;
                assert!(
                    status.success(),
                    "SIGTERM: clean exit: {status:?}\n{}",
                    replica.output().join("\n")
                );
                terms += 1;
            } else {
                replica.kill();
                kills += 1;
            }
            outputs.extend(replica.output());
            *replica = start_replica(&backends, &envs[n]).await;
            ports.lock().unwrap()[n] = replica.port;
        }
        (kills, terms, outputs)
    };
    let work = async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        for event in workload.events(&backends) {
            post_to_some_replica(&http, &ports, &event).await;
        }
        until_settled(&backends, &workload, &size).await;
        let drained = started.elapsed();
        done.store(true, Ordering::SeqCst);
        drained
    };
    let ((kills, terms, mut outputs), drained) = tokio::join!(chaos, work);

    // Stop every replica cleanly, so nothing is in flight while the archive is inspected.
    for replica in &mut replicas {
        let status = replica.terminate(Duration::from_secs(40)).await;
        assert!(status.success(), "{status:?}");
        outputs.extend(replica.output());
    }
    let panics: Vec<_> = outputs.iter().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "{panics:?}");
    backends.proxy().clear_rules();
    let repeated_confirms = assert_end_state(&backends, &workload).await;
    let run = Run {
        runtime: "aos run x3",
        kills,
        graceful_stops: terms,
        skew: skew_seen,
        repeated_confirms,
        drained,
        started,
    };
    print_figures(&run, &workload, backends.proxy());
}

/// The handler stops, in order: (host, graceful). Three hosts, two stops each (a host gives up
/// after a third failure within 30 minutes, as the real one does); the graceful stop comes
/// once half the instances are confirmed.
const HANDLER_STOPS: [(usize, bool); 6] = [
    (0, false),
    (1, false),
    (2, false),
    (1, true),
    (0, false),
    (2, false),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_functions_hosts_lose_nothing_while_handlers_are_killed_and_faulted() {
    let size = size();
    let backends = Backends::start_behind_proxy(SEED + 1).await;
    let workload = Workload::plan(&backends, &size, 400_000, SEED + 1);
    let skews = skew_envs();
    let envs = skews.clone().unwrap_or_else(|| vec![Vec::new(); 3]);
    backends.proxy().add_typical_faults();
    let started = Instant::now();
    let delay = Duration::from_secs(1);

    let mut skew_seen = Vec::new();
    let before = OffsetDateTime::now_utc();
    let app = TestApp::spawn_with(backends, delay, envs[0].clone()).await;
    let mut starts = vec![(before, OffsetDateTime::now_utc())];
    let mut others = Vec::new();
    for env in &envs[1..] {
        let before = OffsetDateTime::now_utc();
        others.push(
            start_host(&app, delay, env)
                .await
                .expect("another host starts"),
        );
        starts.push((before, OffsetDateTime::now_utc()));
    }
    let hosts: Vec<&FunctionsHost> = std::iter::once(&app.host).chain(&others).collect();
    if skews.is_some() {
        for (n, host) in hosts.iter().enumerate() {
            let (before, ready) = starts[n];
            skew_seen.push(check_skew(n, &host.handler_output(), before, ready));
        }
    }
    let done = AtomicBool::new(false);
    let wanted = workload.healthy_ids();

    let chaos = async {
        let (mut kills, mut terms) = (0u32, 0u32);
        for (host, graceful) in HANDLER_STOPS {
            tokio::time::sleep(size.kill_every).await;
            if graceful {
                while !done.load(Ordering::SeqCst) && confirmed_share(&app, &wanted) < 0.5 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                terminate_handler(hosts[host], Duration::from_secs(60))
                    .await
                    .unwrap();
                terms += 1;
            } else {
                kill_handler(hosts[host], Duration::from_secs(30))
                    .await
                    .unwrap();
                kills += 1;
            }
        }
        (kills, terms)
    };
    let work = async {
        for (n, event) in workload.events(&app).iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut turn = n;
            loop {
                assert!(Instant::now() < deadline, "no host took {event} in 60 s");
                match post_event_via(hosts[turn % hosts.len()], event).await {
                    Ok((200, _)) => break,
                    Ok((status, _)) if status >= 500 => {}
                    Ok((status, body)) => panic!("the webhook answered {status}: {body}"),
                    Err(_) => {}
                }
                turn += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        until_settled(&app, &workload, &size).await;
        let drained = started.elapsed();
        done.store(true, Ordering::SeqCst);
        drained
    };
    let ((kills, terms), drained) = tokio::join!(chaos, work);

    for host in &hosts {
        host.wait_until_idle(Duration::from_secs(120))
            .await
            .unwrap();
        let events = host.host_events();
        assert!(!events.iter().any(|e| e.contains("gives up")), "{events:?}");
        let panics: Vec<_> = host
            .handler_output()
            .into_iter()
            .filter(|l| l.contains("panicked"))
            .collect();
        assert!(panics.is_empty(), "{panics:?}");
    }
    let restarts: u32 = hosts.iter().map(|h| h.restarts()).sum();
    assert_eq!(
        restarts,
        kills + terms,
        "every stopped handler was restarted"
    );
    app.proxy().clear_rules();
    let repeated_confirms = assert_end_state(&app, &workload).await;
    let run = Run {
        runtime: "Functions host harness x3",
        kills,
        graceful_stops: terms,
        skew: skew_seen,
        repeated_confirms,
        drained,
        started,
    };
    print_figures(&run, &workload, app.proxy());
}

/// The soak's orphan check sees what a killed upload leaves: a blob with staged blocks and no
/// block list, which a plain listing does not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_listing_shows_an_upload_cut_off_before_its_block_list() {
    let backends = Backends::start().await;
    backends
        .azurite
        .create_container(aos_testkit::world::ARCHIVE_CONTAINER)
        .await
        .unwrap();
    let name = "ttd/test-app/cut-off/data/element";
    backends
        .blobs
        .blob(aos_testkit::world::ARCHIVE_CONTAINER, name)
        .unwrap()
        .block_blob_client()
        .stage_block(
            b"block-0",
            5,
            bytes::Bytes::from_static(b"12345").into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        archive_blob_names(&backends).await.unwrap(),
        vec![name.to_string()]
    );
}

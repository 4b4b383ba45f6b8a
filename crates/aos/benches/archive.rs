//! Archive throughput, Altinn simulator → Azurite, through the real product path, compared in
//! the same run with a baseline that copies the same bytes with the same SDK and no pipeline.
//!
//! Product: events for simulator instances are posted to `EventsReceiver` under the Functions
//! host harness (queue pumps with the host's parallelism, 24 invocations at once), the real
//! `aos` binary runs `EventsProcessor` and `EventsConfirmation`; a run is done when the
//! simulator has seen every instance confirmed.
//!
//! Baseline: for every element, a streamed GET of the simulator's data URL, blocks of the
//! archive's block size staged with `azure_storage_blob` (clients built as `src/storage.rs`
//! builds them), then the block list committed (one Put Blob when it fits in one block) —
//! with the concurrency the product gets (24 invocations × up to 4 elements).
//!
//! Request budget (issue 18): 20 instances × 3 × 10 KiB with the product's storage traffic
//! through the test kit's storage proxy (no faults), which counts it by operation, and the
//! simulator's record of Altinn calls; a first pass and a duplicate pass (the same events again
//! after every instance was confirmed), under the Functions host harness and as `aos run`. The
//! throughput runs go to Azurite directly, like the baseline.
//!
//! `cargo bench --bench archive` (`-- --quick` for a smoke run, `-- --no-write` to only print,
//! `-- --requests-only` for the request budget alone; `AOS_BINARY=<aos>` measures another
//! build).

mod common;
#[path = "archive/minimal.rs"]
mod minimal;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use altinn_aos::storage::StorageEndpoint;
use altinn_sim::{CreatedInstance, InstanceSpec, SimulatorHandle};
use anyhow::{Context, bail};
use futures::StreamExt;

use aos_testkit::request_budget::{Requests, table_rows};
use aos_testkit::standalone::Standalone;
use aos_testkit::storage_proxy::Operation;
use aos_testkit::world::{ARCHIVE_CONTAINER, Backends, QUEUES, TestApp, element, instance};
use common::plot::{Chart, Series, XScale};
use common::proc::{cpu_time, tree_cpu_time};
use common::report::Report;
use common::{BenchArgs, mib, mib_per_s};
use minimal::Minimal;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// Invocations the host runs at once per queue (host.json batchSize 16 + 8).
const INVOCATIONS: usize = 24;
/// Elements one invocation archives at once (`pipeline::process::ELEMENT_CONCURRENCY`).
const ELEMENTS_PER_INVOCATION: usize = altinn_aos::ELEMENT_CONCURRENCY;
/// Events posted to the webhook at once.
const POST_CONCURRENCY: usize = 16;
/// The request budget's workload (issue 18's measure): instances × elements × size.
const BUDGET_INSTANCES: usize = 20;
const BUDGET_ELEMENTS: usize = 3;
const BUDGET_SIZE: u64 = 10 * KIB;

fn main() -> anyhow::Result<()> {
    common::run_on_runtime(run)
}

/// One measured run: wall time, bytes of element content, and CPU used meanwhile.
#[derive(Clone, Copy, Default)]
struct Run {
    instances: usize,
    bytes: u64,
    elapsed: Duration,
    aos_cpu: Duration,
    azurite_cpu: Duration,
    bench_cpu: Duration,
}

impl Run {
    fn instances_per_s(&self) -> f64 {
        self.instances as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
    fn mib_per_s(&self) -> f64 {
        mib_per_s(self.bytes, self.elapsed)
    }
}

struct Bench {
    app: TestApp,
    http: reqwest::Client,
    blobs: StorageEndpoint,
    minimal: Arc<Minimal>,
}

/// CPU readings of the three processes involved.
struct Cpu {
    aos: Duration,
    azurite: Duration,
    bench: Duration,
}

impl Bench {
    async fn start() -> anyhow::Result<Bench> {
        let backends = Backends::start_unguarded()
            .await
            .context("Azurite (run `npm ci`) and the simulator")?;
        backends.azurite.create_container(ARCHIVE_CONTAINER).await?;
        let blobs = backends.blobs.clone();
        let app = TestApp::spawn_with(backends, Duration::from_secs(1), Vec::new()).await;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let minimal = Minimal::new(
            &app.azurite.connection_string(),
            app.sim.base_url().as_str(),
        )?;
        minimal.prepare().await?;
        Ok(Bench {
            app,
            http,
            blobs,
            minimal,
        })
    }

    fn cpu(&self) -> Cpu {
        Cpu {
            aos: self
                .app
                .host
                .handler_pid()
                .and_then(cpu_time)
                .unwrap_or_default(),
            azurite: self
                .app
                .azurite
                .pid()
                .map(tree_cpu_time)
                .unwrap_or_default(),
            bench: cpu_time(std::process::id()).unwrap_or_default(),
        }
    }

    fn finish(&self, started: Instant, cpu: Cpu, created: &[CreatedInstance]) -> Run {
        let elapsed = started.elapsed();
        let now = self.cpu();
        Run {
            instances: created.len(),
            bytes: created
                .iter()
                .flat_map(|i| &i.elements)
                .map(|e| e.size)
                .sum(),
            elapsed,
            aos_cpu: now.aos.saturating_sub(cpu.aos),
            azurite_cpu: now.azurite.saturating_sub(cpu.azurite),
            bench_cpu: now.bench.saturating_sub(cpu.bench),
        }
    }

    /// The product: post every instance's event, wait until the simulator saw each confirmed.
    async fn product(&self, specs: Vec<InstanceSpec>) -> anyhow::Result<Run> {
        let (created, events, wanted) = arrange(&self.app.sim, specs);
        let cpu = self.cpu();
        let started = Instant::now();
        let statuses: Vec<u16> = futures::stream::iter(events)
            .map(|event| async move { self.app.post_event(&event).await.status })
            .buffer_unordered(POST_CONCURRENCY)
            .collect()
            .await;
        if let Some(bad) = statuses.iter().find(|s| !(200..300).contains(*s)) {
            bail!("the webhook answered {bad}");
        }
        self.app
            .wait_all_confirmed(&wanted, Duration::from_secs(900))
            .await?;
        let run = self.finish(started, cpu, &created);
        self.app.assert_no_poison().await;
        // Spot check: the last instance is archived as the tests expect (not timed).
        if let Some(last) = created.last() {
            self.app.assert_archived(last).await;
        }
        Ok(run)
    }

    /// The minimal pipeline ([`minimal`]): the same events through the same architecture with
    /// the fewest requests, issued by this process; done, like the product, when the simulator
    /// saw every instance confirmed. The pumps stop once both queues are empty (not timed).
    async fn minimal(&self, specs: Vec<InstanceSpec>) -> anyhow::Result<Run> {
        let (created, events, wanted) = arrange(&self.app.sim, specs);
        let cpu = self.cpu();
        let started = Instant::now();
        let pumps = self.minimal.start();
        self.minimal.receive(&events).await?;
        self.app
            .wait_all_confirmed(&wanted, Duration::from_secs(900))
            .await?;
        let run = self.finish(started, cpu, &created);
        self.minimal.settle(Duration::from_secs(60)).await?;
        drop(pumps);
        Ok(run)
    }

    /// The baseline: the same bytes copied with the same SDK, `concurrency` elements at once.
    async fn baseline(&self, specs: Vec<InstanceSpec>, concurrency: usize) -> anyhow::Result<Run> {
        let created: Vec<CreatedInstance> = specs
            .into_iter()
            .map(|s| self.app.sim.add_instance(s))
            .collect();
        let base = self.app.sim.base_url();
        let copies: Vec<(String, String, u64)> = created
            .iter()
            .flat_map(|inst| {
                let base = &base;
                inst.elements.iter().map(move |e| {
                    (
                        format!(
                            "{base}storage/api/v1/instances/{}/{}/data/{}",
                            inst.party_id, inst.instance_guid, e.id
                        ),
                        format!("baseline/{}/data/{}", inst.instance_guid, e.id),
                        e.size,
                    )
                })
            })
            .collect();
        let cpu = self.cpu();
        let started = Instant::now();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(copies)
            .map(|(url, name, size)| minimal::copy(&self.http, &self.blobs, url, name, size))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for result in results {
            result?;
        }
        Ok(self.finish(started, cpu, &created))
    }
}

/// Counts what `work` costs: the proxy's storage requests and the simulator's Altinn calls
/// from its start to its end, per instance of `instances`.
async fn count_requests(
    backends: &Backends,
    instances: usize,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Requests> {
    let proxy = backends.proxy();
    proxy.reset();
    let before = backends.sim.calls().len();
    work.await?;
    let calls = backends.sim.calls();
    Ok(Requests::new(
        instances,
        proxy.counts_by_operation(),
        &calls[before.min(calls.len())..],
    ))
}

/// First pass and duplicate pass of the budget workload under the Functions host harness. A
/// pass ends when the host is idle (queues empty, nothing in flight), so the confirmation step
/// and everything after it are counted.
async fn budget_under_functions() -> anyhow::Result<(Requests, Requests)> {
    let backends = Backends::start_unguarded_behind_proxy(0).await?;
    backends.azurite.create_container(ARCHIVE_CONTAINER).await?;
    let app = TestApp::spawn_with(backends, Duration::from_secs(1), Vec::new()).await;
    let (created, events, wanted) = arrange(
        &app.sim,
        specs(BUDGET_INSTANCES, BUDGET_ELEMENTS, BUDGET_SIZE, 500_000),
    );
    let post_all = || async {
        let statuses: Vec<u16> = futures::stream::iter(events.iter())
            .map(|event| async { app.post_event(event).await.status })
            .buffer_unordered(POST_CONCURRENCY)
            .collect()
            .await;
        match statuses.iter().find(|s| !(200..300).contains(*s)) {
            Some(bad) => bail!("the webhook answered {bad}"),
            None => Ok(()),
        }
    };
    let first = count_requests(&app, created.len(), async {
        post_all().await?;
        app.wait_all_confirmed(&wanted, Duration::from_secs(300))
            .await?;
        app.host.wait_until_idle(Duration::from_secs(120)).await
    })
    .await?;
    let duplicate = count_requests(&app, created.len(), async {
        post_all().await?;
        app.host.wait_until_idle(Duration::from_secs(120)).await
    })
    .await?;
    app.assert_no_poison().await;
    Ok((first, duplicate))
}

/// The minimal pipeline's first pass of the budget workload through the same proxy: its own
/// queue traffic is counted (under the host harness the product's is not).
async fn budget_minimal() -> anyhow::Result<Requests> {
    let backends = Backends::start_unguarded_behind_proxy(0).await?;
    backends.azurite.create_container(ARCHIVE_CONTAINER).await?;
    let minimal = Minimal::new(
        &backends.proxy().connection_string(),
        backends.sim.base_url().as_str(),
    )?;
    minimal.prepare().await?;
    let (created, events, wanted) = arrange(
        &backends.sim,
        specs(BUDGET_INSTANCES, BUDGET_ELEMENTS, BUDGET_SIZE, 700_000),
    );
    count_requests(&backends, created.len(), async {
        let pumps = minimal.start();
        minimal.receive(&events).await?;
        backends
            .wait_all_confirmed(&wanted, Duration::from_secs(300))
            .await?;
        minimal.settle(Duration::from_secs(60)).await?;
        drop(pumps);
        Ok(())
    })
    .await
}

/// The same with `aos run`, whose queue traffic is its own (and counted). A pass ends when the
/// queues are empty and no storage request but queue polls has been made for 2 s; the polls
/// made meanwhile are counted too, so "queue get messages" depends on time as well as work.
async fn budget_as_aos_run() -> anyhow::Result<(Requests, Requests)> {
    let backends = Backends::start_unguarded_behind_proxy(0).await?;
    backends.azurite.create_container(ARCHIVE_CONTAINER).await?;
    let runtime = Standalone::start(&backends).await;
    let (created, events, wanted) = arrange(
        &backends.sim,
        specs(BUDGET_INSTANCES, BUDGET_ELEMENTS, BUDGET_SIZE, 600_000),
    );
    let post_all = || async {
        let statuses: Vec<u16> = futures::stream::iter(events.iter())
            .map(|event| async { runtime.post_event(event).await.0 })
            .buffer_unordered(POST_CONCURRENCY)
            .collect()
            .await;
        match statuses.iter().find(|s| !(200..300).contains(*s)) {
            Some(bad) => bail!("the webhook answered {bad}"),
            None => Ok(()),
        }
    };
    let first = count_requests(&backends, created.len(), async {
        post_all().await?;
        backends
            .wait_all_confirmed(&wanted, Duration::from_secs(300))
            .await?;
        settle(&backends).await
    })
    .await?;
    let duplicate = count_requests(&backends, created.len(), async {
        post_all().await?;
        settle(&backends).await
    })
    .await?;
    backends.assert_no_poison().await;
    Ok((first, duplicate))
}

/// Waits until `aos run` is done: both queues empty (visible or not) and the proxy has seen
/// nothing but queue polls for 2 s.
async fn settle(backends: &Backends) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let work = |b: &Backends| -> u64 {
        b.proxy()
            .counts_by_operation()
            .iter()
            .filter(|(op, _)| **op != Operation::QueueGet)
            .map(|(_, n)| n)
            .sum()
    };
    let mut last = (work(backends), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = work(backends);
        if now != last.0 {
            last = (now, Instant::now());
        }
        let mut queued = 0;
        for queue in QUEUES {
            queued += backends.azurite.queues().approximate_count(queue).await?;
        }
        if queued == 0 && last.1.elapsed() >= Duration::from_secs(2) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("aos run did not settle: {queued} message(s) queued");
        }
    }
}

/// The request budget section of the record.
async fn request_budget(report: &mut Report) -> anyhow::Result<()> {
    eprintln!(
        "request budget: {BUDGET_INSTANCES} × {BUDGET_ELEMENTS} × {} under the host harness",
        size_label(BUDGET_SIZE)
    );
    let (functions_first, functions_duplicate) = budget_under_functions().await?;
    eprintln!("request budget: the same as aos run");
    let (run_first, run_duplicate) = budget_as_aos_run().await?;
    eprintln!("request budget: the minimal pipeline");
    let minimal_first = budget_minimal().await?;
    report.section("Requests per instance");
    report.paragraph(&format!(
        "{BUDGET_INSTANCES} instances × {BUDGET_ELEMENTS} × {} through the `aos` binary `{}`. \
         Storage requests are the product's, counted by the test kit's storage proxy between \
         it and Azurite (no faults); Altinn requests are the simulator's record. First pass: \
         fresh instances, until every one is confirmed and the runtime is idle. Duplicate: the \
         same events posted again afterwards. Under the Functions host the trigger and output \
         queues are the host's (not counted); `aos run` does its own queue work, and its \
         \"queue get messages\" include the polls of the idle 2 s that end each pass. The \
         minimal pipeline (the bench's own requests, no product; see below) counts its queue \
         work like `aos run`, its gets in batches like the host's, with the polls of its idle \
         pumps until both queues are empty.",
        size_label(BUDGET_SIZE),
        aos_testkit::aos_binary().display(),
    ));
    report.table(
        &[
            "Side",
            "Operation",
            "Functions: first pass",
            "Functions: duplicate",
            "aos run: first pass",
            "aos run: duplicate",
            "minimal pipeline: first pass",
        ],
        &table_rows(&[
            &functions_first,
            &functions_duplicate,
            &run_first,
            &run_duplicate,
            &minimal_first,
        ]),
    );
    let target = 2 * BUDGET_ELEMENTS as u64 + 7;
    let met = |measured: f64, budget: f64| if measured <= budget { "met" } else { "not met" };
    // The container is created once per process, not per instance: left out of the comparison.
    let steady = |pass: &Requests| {
        let once = pass
            .storage
            .get(&Operation::ContainerCreate)
            .copied()
            .unwrap_or(0);
        pass.per_instance() - pass.per(once)
    };
    report.paragraph(&format!(
        "Target (issue 18) for N = {BUDGET_ELEMENTS} elements under the host harness: first pass \
         ≤ 2N + 7 = {target} requests per instance — measured {:.2} without the one container \
         creation of the process ({}); a duplicate ≤ 2 — measured {:.2} ({}).",
        steady(&functions_first),
        met(steady(&functions_first), target as f64),
        steady(&functions_duplicate),
        met(steady(&functions_duplicate), 2.0),
    ));
    Ok(())
}

/// The workloads issue 18 measures against the minimal pipeline: (instances, elements, size).
const MINIMAL_WORKLOADS: [(usize, usize, u64); 3] =
    [(100, 3, 10 * KIB), (50, 1, 256 * KIB), (8, 1, 4 * MIB)];

/// The sum of two runs of one workload.
fn sum(a: Run, b: Run) -> Run {
    Run {
        instances: a.instances + b.instances,
        bytes: a.bytes + b.bytes,
        elapsed: a.elapsed + b.elapsed,
        aos_cpu: a.aos_cpu + b.aos_cpu,
        azurite_cpu: a.azurite_cpu + b.azurite_cpu,
        bench_cpu: a.bench_cpu + b.bench_cpu,
    }
}

/// Product / minimal pipeline for [`MINIMAL_WORKLOADS`], each measured product, minimal,
/// minimal, product (drift on the shared machine falls on both equally), fresh instances
/// every time.
async fn against_minimal(bench: &Bench, report: &mut Report, rounds: usize) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    let mut ratios = Vec::new();
    for (i, &(count, elements, size)) in MINIMAL_WORKLOADS.iter().enumerate() {
        let name = format!("{count} × {elements} × {}", size_label(size));
        eprintln!("product / minimal pipeline: {name}");
        let party = 1_000_000 + 100_000 * i as u64;
        let workload = |n: u64| specs(count, elements, size, party + n * 1_000);
        let (mut product, mut minimal) = (Run::default(), Run::default());
        let mut pairs = Vec::new();
        for round in 0..rounds {
            let n = 4 * round as u64;
            let product_a = bench.product(workload(n)).await?;
            let minimal_a = bench.minimal(workload(n + 1)).await?;
            let minimal_b = bench.minimal(workload(n + 2)).await?;
            let product_b = bench.product(workload(n + 3)).await?;
            for (p, m) in [(product_a, minimal_a), (product_b, minimal_b)] {
                pairs.push(format!(
                    "{:.2}",
                    p.instances_per_s() / m.instances_per_s().max(f64::EPSILON)
                ));
            }
            product = sum(sum(product, product_a), product_b);
            minimal = sum(sum(minimal, minimal_a), minimal_b);
        }
        let r = product.instances_per_s() / minimal.instances_per_s().max(f64::EPSILON);
        eprintln!(
            "  product {:.1}/s, minimal {:.1}/s: {r:.2} (pairs {})",
            product.instances_per_s(),
            minimal.instances_per_s(),
            pairs.join(", ")
        );
        ratios.push((name.clone(), r, pairs.join(", ")));
        for (path, run) in [("product", &product), ("minimal pipeline", &minimal)] {
            let per = |d: Duration| {
                format!(
                    "{:.2}",
                    1000.0 * d.as_secs_f64() / run.instances.max(1) as f64
                )
            };
            rows.push(vec![
                name.clone(),
                path.to_string(),
                run.instances.to_string(),
                secs(run.elapsed),
                format!("{:.1}", run.instances_per_s()),
                format!("{:.1}", run.mib_per_s()),
                if path == "product" {
                    format!("**{r:.2}**")
                } else {
                    "—".into()
                },
            ]);
            cpu_rows.push(vec![
                name.clone(),
                path.to_string(),
                per(run.aos_cpu),
                per(run.azurite_cpu),
                per(run.bench_cpu),
            ]);
        }
    }
    report.section("Product vs the minimal pipeline");
    report.paragraph(
        "The minimal pipeline is the product's architecture with the fewest requests, issued by \
         the bench with the same SDK and no product (`benches/archive/minimal.rs`): the event \
         put on an inbound queue; a step that reads the instance, copies each element (one Put \
         Blob below the block size, blocks and a commit above), writes the instance JSON and a \
         manifest, puts the event on a confirmation queue and deletes its message; a step that \
         reads the instance again, lists the instance's folder once, checks every element's size \
         and the manifest, calls complete and deletes its message. Both queue hops are included \
         with the same message (the event, base64), because the product pays them too: under \
         the host harness the host puts, gets and deletes on Azurite for both queues. Its pumps \
         work as the harness's (batches of 16, 24 messages at once, 50 ms idle polls), elements \
         4 at a time per instance. It leaves out the webhook's HTTP hop and the product's own \
         work: the listing before archiving (resumability), metadata and SHA-256, the \
         manifest's fingerprints. Each workload ran product, minimal, minimal, product with \
         fresh instances (three such rounds in the full run, one with `--quick`); the figures \
         are the sums of all runs, each done when the simulator saw every instance confirmed.",
    );
    report.table(
        &[
            "Workload (instances × elements × size)",
            "Path",
            "Instances",
            "Time (s)",
            "Instances/s",
            "MiB/s",
            "Product / minimal",
        ],
        &rows,
    );
    report.paragraph(
        "CPU per instance (ms, user + system) in the same runs; \"bench\" is this process: \
         simulator and host harness, and for the minimal pipeline its own requests.",
    );
    report.table(
        &[
            "Workload",
            "Path",
            "aos CPU (ms)",
            "Azurite CPU (ms)",
            "bench CPU (ms)",
        ],
        &cpu_rows,
    );
    report.paragraph(&format!(
        "Target (issue 18): product / minimal pipeline ≥ 0.8 for each — {}.",
        ratios
            .iter()
            .map(|(name, r, pairs)| format!(
                "{name}: {r:.2} ({}; the pairs run after one another: {pairs})",
                if *r >= 0.8 { "met" } else { "not met" }
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ));
    Ok(())
}

/// The instances added to the simulator, their completed events, and their ids (what a run
/// waits for): the same start for every measured pass.
fn arrange(
    sim: &SimulatorHandle,
    specs: Vec<InstanceSpec>,
) -> (
    Vec<CreatedInstance>,
    Vec<serde_json::Value>,
    HashSet<String>,
) {
    let created: Vec<CreatedInstance> = specs.into_iter().map(|s| sim.add_instance(s)).collect();
    let events = created.iter().map(|c| sim.completed_event(c)).collect();
    let wanted = created.iter().map(CreatedInstance::instance_id).collect();
    (created, events, wanted)
}

/// `count` instances, each with `per_instance` elements of `size` bytes.
fn specs(count: usize, per_instance: usize, size: u64, party: u64) -> Vec<InstanceSpec> {
    (0..count)
        .map(|i| {
            instance(
                party + i as u64,
                (0..per_instance)
                    .map(|j| element(size, Some(&format!("vedlegg-{j}.pdf"))))
                    .collect(),
            )
        })
        .collect()
}

fn size_label(bytes: u64) -> String {
    if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn ratio(product: f64, baseline: f64) -> String {
    format!("{:.2}", product / baseline.max(f64::EPSILON))
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut report = Report::new(
        "archive",
        "Archive throughput: simulator → Azurite, product vs SDK baseline",
        &args,
    );
    if !args.minimal_only {
        request_budget(&mut report).await?;
    }
    if args.requests_only {
        return report.finish();
    }
    let bench = Bench::start().await?;
    // Rounds of product, minimal, minimal, product per workload: the figures are small and the
    // machine shared, so the full run repeats them.
    against_minimal(&bench, &mut report, if args.quick { 1 } else { 3 }).await?;
    if args.minimal_only {
        return report.finish();
    }
    report.section("Throughput: product and baseline");
    report.paragraph(
        "Product: events posted to `EventsReceiver` under the Functions host harness (up to 24 \
         invocations at once per queue, as the host), the release `aos` binary runs \
         `EventsProcessor` and `EventsConfirmation`; done when the simulator saw every instance \
         confirmed. Baseline: the same bytes copied with `azure_storage_blob` and no pipeline \
         (streamed GET of the simulator's data URL, 4 MiB blocks staged, block list committed; \
         one Put Blob under 4 MiB), with the concurrency the product gets. Both in the same \
         run, same Azurite (data on disk in a temporary folder), same simulator (in the bench \
         process, generating content on the fly). CPU is user + system time of each process \
         during the run; \"bench\" is this process: simulator, host harness and, for the \
         baseline, the copies themselves. On a shared 2-core machine the absolute figures are \
         noisy: read the ratios.",
    );

    // (a) Many small instances.
    let (small_count, small_size) = if args.quick {
        (100, 10 * KIB)
    } else {
        (1000, 10 * KIB)
    };
    eprintln!(
        "small instances: {small_count} × 3 × {}",
        size_label(small_size)
    );
    let product_small = bench
        .product(specs(small_count, 3, small_size, 10_000))
        .await?;
    let baseline_small = bench
        .baseline(
            specs(small_count, 3, small_size, 20_000),
            INVOCATIONS * 3.min(ELEMENTS_PER_INVOCATION),
        )
        .await?;

    // (b) Large elements, one per instance, all at once.
    let (large_count, large_size) = if args.quick {
        (2, 32 * MIB)
    } else {
        (4, 256 * MIB)
    };
    eprintln!("large elements: {large_count} × {}", size_label(large_size));
    let product_large = bench
        .product(specs(large_count, 1, large_size, 30_000))
        .await?;
    let baseline_large = bench
        .baseline(specs(large_count, 1, large_size, 40_000), large_count)
        .await?;

    report.section("Small instances and large elements");
    let header = [
        "Workload",
        "Path",
        "Instances",
        "MiB",
        "Time (s)",
        "Instances/s",
        "MiB/s",
        "Product / baseline",
    ];
    let row = |workload: &str, path: &str, run: &Run, ratio: String| {
        vec![
            workload.to_string(),
            path.to_string(),
            run.instances.to_string(),
            format!("{:.1}", mib(run.bytes)),
            secs(run.elapsed),
            format!("{:.1}", run.instances_per_s()),
            format!("{:.1}", run.mib_per_s()),
            ratio,
        ]
    };
    let small_name = format!(
        "(a) {small_count} instances × 3 × {}",
        size_label(small_size)
    );
    let large_name = format!(
        "(b) {large_count} instances × 1 × {}",
        size_label(large_size)
    );
    report.table(
        &header,
        &[
            row(
                &small_name,
                "product",
                &product_small,
                ratio(product_small.mib_per_s(), baseline_small.mib_per_s()),
            ),
            row(&small_name, "baseline", &baseline_small, "—".into()),
            row(
                &large_name,
                "product",
                &product_large,
                ratio(product_large.mib_per_s(), baseline_large.mib_per_s()),
            ),
            row(&large_name, "baseline", &baseline_large, "—".into()),
        ],
    );
    report.paragraph(&format!(
        "Target: product / baseline ≥ 0.8 for large elements — measured {}.",
        ratio(product_large.mib_per_s(), baseline_large.mib_per_s())
    ));

    report.section("CPU split");
    let cpu_row = |workload: &str, path: &str, run: &Run| {
        let total = (run.aos_cpu + run.azurite_cpu + run.bench_cpu).as_secs_f64();
        let share = |d: Duration| {
            format!(
                "{:.2} s ({:.0} %)",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / total.max(f64::EPSILON)
            )
        };
        vec![
            workload.to_string(),
            path.to_string(),
            secs(run.elapsed),
            share(run.aos_cpu),
            share(run.azurite_cpu),
            share(run.bench_cpu),
            format!("{:.2}", total / run.elapsed.as_secs_f64().max(f64::EPSILON)),
        ]
    };
    report.table(
        &[
            "Workload",
            "Path",
            "Wall (s)",
            "aos CPU",
            "Azurite CPU",
            "bench CPU (simulator + harness)",
            "CPUs busy",
        ],
        &[
            cpu_row(&small_name, "product", &product_small),
            cpu_row(&small_name, "baseline", &baseline_small),
            cpu_row(&large_name, "product", &product_large),
            cpu_row(&large_name, "baseline", &baseline_large),
        ],
    );
    report.paragraph(&format!(
        "Per small instance the product spends {:.2} ms of aos CPU and {:.2} ms of Azurite CPU \
         (queue messages, instance JSON, manifest and two listings of the instance's folder on \
         top of the element writes); the baseline {:.2} ms of Azurite CPU. \"CPUs busy\" near the machine's \
         {} CPUs means the run is CPU-bound, and the largest share says who binds it.",
        1000.0 * product_small.aos_cpu.as_secs_f64() / product_small.instances.max(1) as f64,
        1000.0 * product_small.azurite_cpu.as_secs_f64() / product_small.instances.max(1) as f64,
        1000.0 * baseline_small.azurite_cpu.as_secs_f64() / baseline_small.instances.max(1) as f64,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    ));

    // Sweep over element sizes, one element per instance, total bytes per point bounded.
    let (sizes, total, max_count): (Vec<u64>, u64, u64) = if args.quick {
        (vec![10 * KIB, 256 * KIB, 4 * MIB, 32 * MIB], 32 * MIB, 50)
    } else {
        (
            vec![10 * KIB, 256 * KIB, 4 * MIB, 32 * MIB, 256 * MIB],
            256 * MIB,
            200,
        )
    };
    let mut points: Vec<(u64, Run, Run)> = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        if size == large_size {
            points.push((size, product_large, baseline_large));
            continue;
        }
        let count = (total / size).clamp(4, max_count) as usize;
        eprintln!("sweep: {count} × {}", size_label(size));
        let party = 100_000 + 10_000 * i as u64;
        let product = bench.product(specs(count, 1, size, party)).await?;
        let baseline = bench
            .baseline(specs(count, 1, size, party + 5_000), count.min(INVOCATIONS))
            .await?;
        points.push((size, product, baseline));
    }
    report.section("Throughput by element size");
    report.paragraph(
        "One element per instance; each point moves a bounded total (up to 200 instances, \
         256 MiB), the baseline with as many concurrent copies as the product has invocations.",
    );
    report.table(
        &[
            "Element size",
            "Instances",
            "Product MiB/s",
            "Baseline MiB/s",
            "Product / baseline",
            "Product instances/s",
        ],
        &points
            .iter()
            .map(|(size, p, b)| {
                vec![
                    size_label(*size),
                    p.instances.to_string(),
                    format!("{:.1}", p.mib_per_s()),
                    format!("{:.1}", b.mib_per_s()),
                    ratio(p.mib_per_s(), b.mib_per_s()),
                    format!("{:.1}", p.instances_per_s()),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let chart = Chart {
        title: "Archive throughput by element size (simulator → Azurite)",
        x_label: "element size (KiB, log scale)",
        y_label: "MiB/s",
        x_scale: XScale::Log,
    };
    let series = |name: &str, pick: fn(&(u64, Run, Run)) -> f64| Series {
        name: name.to_string(),
        points: points
            .iter()
            .map(|p| ((p.0 / KIB) as f64, pick(p)))
            .collect(),
    };
    let svg = "archive-throughput.svg";
    if !args.no_write {
        chart.draw(
            &report.asset_path(svg),
            &[
                series("product (aos under the host harness)", |p| p.1.mib_per_s()),
                series("baseline (SDK copy, no pipeline)", |p| p.2.mib_per_s()),
            ],
        )?;
    }
    report.image("Archive throughput by element size", svg);
    report.finish()
}

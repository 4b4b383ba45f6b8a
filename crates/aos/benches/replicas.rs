//! Replicas (issue 18): 1, 2 and 3 `aos run` processes on the same queues, same Azurite and
//! simulator, over the same workload (small instances, 3 × 10 KiB, the common case). Reports
//! throughput per replica count, who used the CPU (the replicas, Azurite, this process with
//! the simulator), and duplicate work: data downloads beyond one per element, instance reads
//! beyond the two per instance the pipeline makes, complete calls beyond one per instance.
//!
//! What it is to show: throughput is bounded by the storage emulator (Azurite is one Node.js
//! process: "Azurite busy" near 1.0 CPU means it is saturated), not by coordination between
//! replicas, and replicas do not download the same element twice except when a message is
//! delivered again (at-least-once: a lease that ran out mid-step).
//!
//! Each replica count runs twice, in the order 1, 2, 3, 3, 2, 1 (drift on the shared machine
//! falls on every count alike), each run on a fresh Azurite (listings in its in-memory store
//! scan every blob, so it slows down as it fills); the figures are the sums.
//! Events are posted round-robin to the replicas' webhooks, 16 at a time.
//!
//! `cargo bench --bench replicas` (`-- --quick` for a smoke run, `-- --no-write` to only print).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use altinn_sim::CreatedInstance;
use anyhow::{Context, bail};
use futures::StreamExt;

use aos_testkit::request_budget::altinn_kind;
use aos_testkit::standalone::Standalone;
use aos_testkit::world::{ARCHIVE_CONTAINER, Backends, QUEUES, element, instance};
use common::BenchArgs;
use common::plot::{Chart, Series, XScale};
use common::proc::{cpu_time, tree_cpu_time};
use common::report::Report;

const KIB: u64 = 1024;
const ELEMENTS: usize = 3;
const SIZE: u64 = 10 * KIB;
const POST_CONCURRENCY: usize = 16;
const REPLICAS: [usize; 6] = [1, 2, 3, 3, 2, 1];

fn main() -> anyhow::Result<()> {
    common::run_on_runtime(run)
}

/// One run (or the sum of runs) with `replicas` processes.
#[derive(Clone, Copy, Default)]
struct Run {
    instances: usize,
    elapsed: Duration,
    aos_cpu: Duration,
    azurite_cpu: Duration,
    bench_cpu: Duration,
    /// Data GETs beyond one per element.
    extra_data_gets: u64,
    /// Instance GETs beyond two per instance.
    extra_instance_gets: u64,
    /// Complete calls beyond one per instance.
    extra_completes: u64,
}

impl Run {
    fn add(&mut self, other: &Run) {
        self.instances += other.instances;
        self.elapsed += other.elapsed;
        self.aos_cpu += other.aos_cpu;
        self.azurite_cpu += other.azurite_cpu;
        self.bench_cpu += other.bench_cpu;
        self.extra_data_gets += other.extra_data_gets;
        self.extra_instance_gets += other.extra_instance_gets;
        self.extra_completes += other.extra_completes;
    }

    fn per_s(&self) -> f64 {
        self.instances as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// CPUs kept busy on average by `cpu`.
    fn busy(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn ms_per_instance(&self, cpu: Duration) -> f64 {
        1000.0 * cpu.as_secs_f64() / self.instances.max(1) as f64
    }
}

/// `replicas` `aos run` processes archive `count` fresh instances; done when the simulator saw
/// every one confirmed and both queues are empty.
async fn measure(
    backends: &Backends,
    replicas: usize,
    count: usize,
    party: u64,
) -> anyhow::Result<Run> {
    let mut running = Vec::new();
    for _ in 0..replicas {
        running.push(Standalone::start(backends).await);
    }
    let created: Vec<CreatedInstance> = (0..count)
        .map(|i| {
            backends.sim.add_instance(instance(
                party + i as u64,
                (0..ELEMENTS)
                    .map(|j| element(SIZE, Some(&format!("vedlegg-{j}.pdf"))))
                    .collect(),
            ))
        })
        .collect();
    let events: Vec<_> = created
        .iter()
        .map(|c| backends.sim.completed_event(c))
        .collect();
    let wanted: HashSet<String> = created.iter().map(CreatedInstance::instance_id).collect();
    let azurite = backends.azurite.pid().context("Azurite runs")?;
    let aos_cpu = |running: &[Standalone]| -> Duration {
        running
            .iter()
            .map(|r| cpu_time(r.pid()).unwrap_or_default())
            .sum()
    };
    let calls_before = backends.sim.calls().len();
    let before = (
        aos_cpu(&running),
        tree_cpu_time(azurite),
        cpu_time(std::process::id()).unwrap_or_default(),
    );
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(events.iter().enumerate())
        .map(|(i, event)| {
            let replica = &running[i % running.len()];
            async move { replica.post_event(event).await.0 }
        })
        .buffer_unordered(POST_CONCURRENCY)
        .collect()
        .await;
    if let Some(bad) = statuses.iter().find(|s| !(200..300).contains(*s)) {
        bail!("a webhook answered {bad}");
    }
    backends
        .wait_all_confirmed(&wanted, Duration::from_secs(900))
        .await?;
    let elapsed = started.elapsed();
    let cpu = (
        aos_cpu(&running).saturating_sub(before.0),
        tree_cpu_time(azurite).saturating_sub(before.1),
        cpu_time(std::process::id())
            .unwrap_or_default()
            .saturating_sub(before.2),
    );
    // Let the confirmation step's last deletes land, then count what was asked of Altinn.
    empty_queues(backends).await?;
    let calls = backends.sim.calls();
    let mut kinds = std::collections::HashMap::<&str, u64>::new();
    for call in &calls[calls_before.min(calls.len())..] {
        *kinds
            .entry(altinn_kind(&call.method, &call.path))
            .or_default() += 1;
    }
    let kind = |k: &str| kinds.get(k).copied().unwrap_or(0);
    backends.assert_no_poison().await;
    for mut replica in running {
        replica.terminate(Duration::from_secs(10)).await;
    }
    let n = count as u64;
    Ok(Run {
        instances: count,
        elapsed,
        aos_cpu: cpu.0,
        azurite_cpu: cpu.1,
        bench_cpu: cpu.2,
        extra_data_gets: kind("data GET").saturating_sub(n * ELEMENTS as u64),
        extra_instance_gets: kind("instance GET").saturating_sub(2 * n),
        extra_completes: kind("complete").saturating_sub(n),
    })
}

/// Waits until both queues are empty, visible or not.
async fn empty_queues(backends: &Backends) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut queued = 0;
        for queue in QUEUES {
            queued += backends.azurite.queues().approximate_count(queue).await?;
        }
        if queued == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{queued} message(s) still queued");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let count = if args.quick { 60 } else { 300 };
    let mut totals = [Run::default(); 3];
    for (i, replicas) in REPLICAS.into_iter().enumerate() {
        // A fresh Azurite for every run: its in-memory store scans every blob for a listing,
        // so a run on a fuller emulator is slower whatever the replicas do.
        let backends = Backends::start_unguarded()
            .await
            .context("Azurite (run `npm ci`) and the simulator")?;
        backends.azurite.create_container(ARCHIVE_CONTAINER).await?;
        // Warm-up (not measured): queues created, Azurite's JIT warm.
        measure(&backends, 1, 20, 9_000_000).await?;
        eprintln!("{replicas} replica(s): {count} × {ELEMENTS} × 10 KiB");
        let run = measure(&backends, replicas, count, 1_000_000 * (i as u64 + 1)).await?;
        eprintln!(
            "  {:.1} instances/s, aos {:.2} CPUs, Azurite {:.2} CPUs, extra data GETs {}",
            run.per_s(),
            run.busy(run.aos_cpu),
            run.busy(run.azurite_cpu),
            run.extra_data_gets
        );
        totals[replicas - 1].add(&run);
    }

    let mut report = Report::new(
        "replicas",
        "Replicas: 1, 2 and 3 `aos run` on the same queues",
        &args,
    );
    report.paragraph(&format!(
        "Each replica is the release `aos run` (`{}`; lease 3 s, retry delay 1 s, as the test \
         kit starts it) on the same Azurite queues and archive container and the same in-process \
         simulator. Workload per run: {count} fresh instances × {ELEMENTS} × 10 KiB, events \
         posted round-robin to the replicas' webhooks, {POST_CONCURRENCY} at a time; a run ends \
         when the simulator saw every instance confirmed, each run on a fresh Azurite (its \
         in-memory store scans every blob for a listing, so a fuller emulator is slower) after \
         20 warm-up instances. Each count ran twice (order 1, 2, 3, 3, 2, 1); figures are the \
         sums of both. CPU is user + system time; \"busy\" is CPU \
         seconds per wall second (Azurite is one Node.js process: near 1.0 it is saturated). \
         Extra requests are Altinn requests beyond what the pipeline makes once per instance \
         (one data GET per element, two instance GETs, one complete), from the simulator's \
         record.",
        aos_testkit::aos_binary().display(),
    ));
    let base = totals[0].per_s();
    let rows: Vec<Vec<String>> = totals
        .iter()
        .enumerate()
        .map(|(i, run)| {
            vec![
                (i + 1).to_string(),
                run.instances.to_string(),
                format!("{:.2}", run.elapsed.as_secs_f64()),
                format!("{:.1}", run.per_s()),
                format!("{:.2}", run.per_s() / base.max(f64::EPSILON)),
                format!(
                    "{:.2} ({:.1} ms/instance)",
                    run.busy(run.aos_cpu),
                    run.ms_per_instance(run.aos_cpu)
                ),
                format!(
                    "{:.2} ({:.1} ms/instance)",
                    run.busy(run.azurite_cpu),
                    run.ms_per_instance(run.azurite_cpu)
                ),
                format!("{:.2}", run.busy(run.bench_cpu)),
                format!(
                    "{:.0} %",
                    100.0 * run.azurite_cpu.as_secs_f64()
                        / (run.aos_cpu + run.azurite_cpu + run.bench_cpu)
                            .as_secs_f64()
                            .max(f64::EPSILON)
                ),
                format!(
                    "{} / {} / {}",
                    run.extra_data_gets, run.extra_instance_gets, run.extra_completes
                ),
            ]
        })
        .collect();
    report.table(
        &[
            "Replicas",
            "Instances",
            "Wall (s)",
            "Instances/s",
            "vs 1 replica",
            "aos busy (all replicas)",
            "Azurite busy",
            "bench busy (simulator)",
            "Azurite share of CPU used",
            "Extra data GETs / instance GETs / completes",
        ],
        &rows,
    );
    let chart = Chart {
        title: "Instances/s by number of aos run replicas (3 × 10 KiB)",
        x_label: "replicas",
        y_label: "instances/s",
        x_scale: XScale::Linear,
    };
    let svg = "replicas.svg";
    if !args.no_write {
        chart.draw(
            &report.asset_path(svg),
            &[Series {
                name: "aos run replicas on one Azurite".into(),
                points: totals
                    .iter()
                    .enumerate()
                    .map(|(i, r)| ((i + 1) as f64, r.per_s()))
                    .collect(),
            }],
        )?;
    }
    report.image("Instances/s by number of replicas", svg);
    report.finish()
}

//! Memory of the `aos` process while it archives: peak RSS (`VmHWM`, reset before each
//! scenario) and an RSS series sampled every 50 ms, for one 2 GiB element, for single elements
//! of growing size (flat in file size?), and for the host's 24 concurrent invocations.
//!
//! Same world as the archive bench: Azurite (data on disk in a temporary folder, so a 2 GiB
//! element costs disk, not memory), the simulator in this process (content generated on the
//! fly in 64 KiB chunks, never held), the release `aos` under the Functions host harness.
//!
//! `cargo bench --bench memory` (`-- --quick` for a smoke run, `-- --no-write` to only print).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use altinn_sim::{CreatedInstance, InstanceSpec};
use anyhow::{Context, bail};
use futures::StreamExt;

use aos_testkit::world::{Backends, TestApp, element, instance};
use common::plot::{Chart, Series, XScale};
use common::proc::{RssSampler, peak_rss_bytes, rss_bytes};
use common::report::Report;
use common::{BenchArgs, mib, mib_per_s};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// The target for the `aos` process's peak RSS.
const TARGET: u64 = 64 * MIB;

fn main() -> anyhow::Result<()> {
    common::run_on_runtime(run)
}

struct Measured {
    name: String,
    bytes: u64,
    elapsed: Duration,
    /// RSS when the scenario started.
    start_rss: u64,
    /// `VmHWM` after the scenario (reset at its start), or the sampled maximum where the
    /// kernel cannot reset it.
    peak: u64,
    samples: Vec<(Duration, u64)>,
}

async fn start() -> anyhow::Result<TestApp> {
    let backends = Backends::start_unguarded()
        .await
        .context("Azurite (run `npm ci`) and the simulator")?;
    Ok(TestApp::spawn_with(backends, Duration::from_secs(1), Vec::new()).await)
}

/// Resets the kernel's peak-RSS mark of `pid` (`echo 5 > /proc/<pid>/clear_refs`).
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Archives `specs` through the product and watches the `aos` process meanwhile.
async fn scenario(app: &TestApp, name: &str, specs: Vec<InstanceSpec>) -> anyhow::Result<Measured> {
    let pid = app.host.handler_pid().context("the handler runs")?;
    let created: Vec<CreatedInstance> =
        specs.into_iter().map(|s| app.sim.add_instance(s)).collect();
    let wanted: HashSet<String> = created.iter().map(CreatedInstance::instance_id).collect();
    let events: Vec<_> = created.iter().map(|c| app.sim.completed_event(c)).collect();
    let bytes = created
        .iter()
        .flat_map(|i| &i.elements)
        .map(|e| e.size)
        .sum();
    eprintln!("{name}: {} instances, {:.0} MiB", created.len(), mib(bytes));

    let reset = reset_peak(pid);
    let start_rss = rss_bytes(pid).unwrap_or(0);
    let sampler = RssSampler::start(pid, Duration::from_millis(50));
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(events)
        .map(|event| async move { app.post_event(&event).await.status })
        .buffer_unordered(16)
        .collect()
        .await;
    if let Some(bad) = statuses.iter().find(|s| !(200..300).contains(*s)) {
        bail!("the webhook answered {bad}");
    }
    app.wait_all_confirmed(&wanted, Duration::from_secs(900))
        .await
        .with_context(|| name.to_string())?;
    let elapsed = started.elapsed();
    let samples = sampler.finish();
    let sampled_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let peak = match (reset, peak_rss_bytes(pid)) {
        (true, Some(hwm)) => hwm,
        _ => sampled_max,
    };
    app.assert_no_poison().await;
    if let Some(last) = created.last() {
        app.assert_archived(last).await;
    }
    Ok(Measured {
        name: name.to_string(),
        bytes,
        elapsed,
        start_rss,
        peak,
        samples,
    })
}

fn single(party: u64, size: u64) -> Vec<InstanceSpec> {
    vec![instance(party, vec![element(size, Some("stor-fil.bin"))])]
}

/// Bytes under `dir`, recursively.
fn disk_use(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_use(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn size_label(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let app = start().await?;
    let pid = app.host.handler_pid().context("the handler runs")?;
    let mut report = Report::new("memory", "Memory of the aos process while archiving", &args);
    report.paragraph(&format!(
        "Resident memory of the release `aos` binary under the Functions host harness (up to 24 \
         invocations at once, as the host), archiving simulator instances into Azurite. Peak is \
         the kernel's `VmHWM`, reset before each scenario (`/proc/<pid>/clear_refs`), so it \
         includes every allocation between samples; the series is `VmRSS` every 50 ms. Target: \
         ≤ {} MiB and flat in file size. Throughput figures here are incidental (shared \
         machine); see the archive bench.",
        TARGET / MIB
    ));

    // Warm up: the runtime, clients and connection pools exist before the first measurement.
    let idle_before = rss_bytes(pid).unwrap_or(0);
    scenario(&app, "warm-up", single(1, 64 * 1024)).await?;
    let idle = rss_bytes(pid).unwrap_or(0);

    let (huge, sizes, concurrent_size, small_size) = if args.quick {
        (256 * MIB, vec![16 * MIB, 64 * MIB], 8 * MIB, 512 * 1024)
    } else {
        (2 * GIB, vec![16 * MIB, 256 * MIB], 64 * MIB, 3 * MIB)
    };

    let mut flat: Vec<Measured> = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("1 element of {}", size_label(size));
        flat.push(scenario(&app, &name, single(100 + i as u64, size)).await?);
    }
    let disk_before = disk_use(app.azurite.data_dir());
    let big = scenario(
        &app,
        &format!("1 element of {}", size_label(huge)),
        single(200, huge),
    )
    .await?;
    let azurite_disk =
        disk_use(app.azurite.data_dir()) - disk_before.min(disk_use(app.azurite.data_dir()));

    let concurrent = scenario(
        &app,
        &format!(
            "24 instances × 1 element of {}",
            size_label(concurrent_size)
        ),
        (0..24)
            .map(|i| instance(300 + i, vec![element(concurrent_size, Some("vedlegg.pdf"))]))
            .collect(),
    )
    .await?;
    let small_name = format!(
        "24 instances × 4 elements of {} (one Put Blob each)",
        if small_size >= MIB {
            size_label(small_size)
        } else {
            format!("{} KiB", small_size / 1024)
        }
    );
    let many_small = scenario(
        &app,
        &small_name,
        (0..24)
            .map(|i| {
                instance(
                    400 + i,
                    (0..4)
                        .map(|j| element(small_size, Some(&format!("vedlegg-{j}.pdf"))))
                        .collect(),
                )
            })
            .collect(),
    )
    .await?;

    report.section("Peak RSS");
    report.paragraph(&format!(
        "Idle after start-up: {:.1} MiB; after one small warm-up instance: {:.1} MiB.",
        mib(idle_before),
        mib(idle)
    ));
    let rows: Vec<Vec<String>> = flat
        .iter()
        .chain([&big, &concurrent, &many_small])
        .map(|m| {
            vec![
                m.name.clone(),
                format!("{:.0}", mib(m.bytes)),
                format!("{:.1}", mib(m.start_rss)),
                format!("{:.1}", mib(m.peak)),
                if m.peak <= TARGET { "yes" } else { "no" }.to_string(),
                format!("{:.1}", m.elapsed.as_secs_f64()),
                format!("{:.0}", mib_per_s(m.bytes, m.elapsed)),
            ]
        })
        .collect();
    report.table(
        &[
            "Scenario",
            "MiB archived",
            "RSS at start (MiB)",
            "Peak RSS (MiB)",
            &format!("≤ {} MiB", TARGET / MIB),
            "Time (s)",
            "MiB/s",
        ],
        &rows,
    );
    let peaks: Vec<f64> = flat.iter().chain([&big]).map(|m| mib(m.peak)).collect();
    let spread = peaks.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        - peaks.iter().cloned().fold(f64::INFINITY, f64::min);
    report.paragraph(&format!(
        "Flat in file size: single-element peaks differ by {spread:.1} MiB from {} to {}.",
        size_label(sizes[0]),
        size_label(huge)
    ));
    report.paragraph(&format!(
        "Azurite stored the {} element on disk in its `--location` folder (a temporary \
         folder, deleted afterwards): {:.0} MiB written there during that scenario.",
        size_label(huge),
        mib(azurite_disk)
    ));

    report.section("RSS over time");
    let svg = "memory-2gib.svg";
    let to_series = |name: &str, m: &Measured| Series {
        name: name.to_string(),
        points: m
            .samples
            .iter()
            .map(|(t, rss)| (t.as_secs_f64(), mib(*rss)))
            .collect(),
    };
    if !args.no_write {
        Chart {
            title: "aos resident memory while archiving",
            x_label: "seconds since the events were posted",
            y_label: "RSS (MiB)",
            x_scale: XScale::Linear,
        }
        .draw(
            &report.asset_path(svg),
            &[
                to_series(&big.name, &big),
                to_series(&concurrent.name, &concurrent),
                Series {
                    name: format!("target {} MiB", TARGET / MIB),
                    points: vec![
                        (0.0, mib(TARGET)),
                        (
                            big.elapsed.max(concurrent.elapsed).as_secs_f64(),
                            mib(TARGET),
                        ),
                    ],
                },
            ],
        )?;
    }
    report.image("aos RSS over time", svg);
    report.finish()
}

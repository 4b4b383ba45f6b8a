//! Benchmark 1 (issue 8): webhook ingest.
//!
//! (a) The handler alone: `aos serve` answering host-shaped `EventsReceiver` invocations (the
//!     HTTP-trigger payload exactly as the Functions host sends it), posted on loopback over
//!     keep-alive connections at several concurrency levels. Reports invocations/s, latency
//!     percentiles, the handler's CPU time per 1,000 invocations and its peak RSS. A sample of
//!     responses is checked (200, one `inbound` queue output, `res` 200).
//! (b) Through the standalone webhook: `aos run` with its webhook secret, each event written to
//!     the Azurite queue before the answer. Reports events/s, latency and the CPU split
//!     between `aos` and Azurite.
//!
//! `-- --pin` (issue 18) pins part (a): the handler to CPU 0 (`taskset -c 0`, so its runtime
//! sees one CPU) and the load generator to CPU 1, at 1–64 connections with 16 and 32 added:
//! the figures are then one handler core's, not the machine's. It adds paced levels: the
//! invocations offered at a fixed rate (up to the target's 20,000/s), latency counted from when
//! each was due, which is what a sender sees at that rate; closed loop, the latency at 32
//! connections is mostly the queue of the other 31.
//!
//! `cargo bench --bench ingest [-- --quick] [-- --no-write]`. With `AOS_BENCH_BASELINE=<path to
//! another aos binary>` part (a) also runs that binary, interleaved with this one, so a change
//! is measured before/after in one run.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use aos_testkit::GroupChild;
use aos_testkit::app::FunctionApp;
use aos_testkit::invocation::{HOST_VERSION, HttpCall, SysInfo, http_request};
use aos_testkit::standalone::{Standalone, WEBHOOK_SECRET};
use aos_testkit::world::{Backends, instance};
use common::http::{self, LoadResult, Schedule};
use common::plot::{Chart, Series, XScale};
use common::report::Report;
use common::{BenchArgs, percentile, proc};
use serde_json::Value;

const FIXTURE: &str = "event-app-instance-process-completed.at22.json";
/// Distinct events (ids) cycled through by the load generator.
const VARIANTS: usize = 64;
/// Every n-th response is fully checked.
const CHECK_EVERY: usize = 97;
/// With `--pin`: the handler's CPU and the load generator's.
const HANDLER_CPU: usize = 0;
const LOAD_CPU: usize = 1;
/// With `--pin`: the paced levels, (connections, offered invocations/s): issue 18's target rate
/// at 16 and 32 connections, and lower rates at 32 to show how far p99 < 2 ms holds.
const PACED_LEVELS: &[(usize, f64)] = &[
    (16, 20_000.0),
    (32, 10_000.0),
    (32, 15_000.0),
    (32, 20_000.0),
];

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse();
    // The load generator runs on one thread: it shares the machine's cores with the process it
    // measures, and one thread bounds what it takes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

struct Level {
    binary: String,
    concurrency: usize,
    /// Paced levels: the offered rate (invocations/s); closed-loop levels: `None`.
    offered: Option<f64>,
    result: LoadResult,
    handler_cpu: Duration,
    bench_cpu: Duration,
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let backends = Backends::start().await;
    let apps_base = backends.sim.base_url().to_string();

    // ---------------------------------------------------------------- (a) the handler alone
    let mut binaries = vec![("aos".to_string(), PathBuf::from(env!("CARGO_BIN_EXE_aos")))];
    if let Some(baseline) = std::env::var_os("AOS_BENCH_BASELINE") {
        binaries.push(("baseline".to_string(), PathBuf::from(baseline)));
    }
    let requests = Arc::new(invocation_requests(&apps_base)?);
    let mut handlers = Vec::new();
    let handler_cpu = args.pin.then_some(HANDLER_CPU);
    for (name, binary) in &binaries {
        handlers.push((
            name.clone(),
            Handler::start(binary, &backends, handler_cpu).await?,
        ));
    }
    // Read before pinning: the count follows this process's affinity.
    let all_cpus = format!("0-{}", available_cpus() - 1);
    if args.pin {
        pin_self(&LOAD_CPU.to_string())?;
    }
    let levels: &[usize] = if args.pin {
        &[1, 8, 16, 32, 64]
    } else {
        &[1, 8, 64]
    };
    let total = |c: usize| match (args.quick, c) {
        (true, _) => 2_000,
        (false, 1) => 20_000,
        (false, _) => 60_000,
    };
    // Closed loop at each level, then (pinned) the target's own terms: invocations offered at a
    // fixed rate. Paced levels need the load generator on a CPU of its own (it spins between
    // requests).
    let closed = levels.iter().map(|&concurrency| (concurrency, None));
    let paced = PACED_LEVELS
        .iter()
        .filter(|_| args.pin)
        .map(|&(concurrency, rate)| (concurrency, Some(rate)));
    let (mut measured, mut paced_measured) = (Vec::new(), Vec::new());
    for (concurrency, rate) in closed.chain(paced) {
        for (name, handler) in &handlers {
            let level = measure(
                name,
                handler,
                &requests,
                concurrency,
                total(concurrency),
                rate,
            )
            .await?;
            match rate {
                None => measured.push(level),
                Some(_) => paced_measured.push(level),
            }
        }
    }
    let peaks: Vec<(String, Option<u64>)> = handlers
        .iter()
        .map(|(name, h)| (name.clone(), proc::peak_rss_bytes(h.pid())))
        .collect();
    drop(handlers);
    if args.pin {
        // Part (b) measures the system (aos run, Azurite, simulator): every CPU again.
        pin_self(&all_cpus)?;
    }

    // ------------------------------------------------------- (b) standalone webhook → Azurite
    let standalone = Standalone::start(&backends).await;
    // One tiny instance (no data elements) that exists, so the worker draining the queue next
    // to the webhook archives it once and then recognises each further event as done.
    let inst = backends.sim.add_instance(instance(50_019_855, Vec::new()));
    let event = backends.sim.completed_event(&inst);
    let webhook_requests = Arc::new(
        (0..VARIANTS)
            .map(|_| {
                let mut event = event.clone();
                event["id"] = Value::String(uuid::Uuid::new_v4().to_string());
                http::request(
                    "POST",
                    &format!("/api/EventsReceiver?code={WEBHOOK_SECRET}"),
                    "application/json; charset=utf-8",
                    event.to_string().as_bytes(),
                )
            })
            .collect::<Vec<_>>(),
    );
    let azurite_pid = backends.azurite.pid().context("Azurite runs")?;
    let mut webhook = Vec::new();
    for &concurrency in levels {
        let total = if args.quick { 200 } else { 3_000 };
        http::load(
            standalone.port,
            webhook_requests.clone(),
            concurrency,
            100,
            1,
            check_webhook,
        )
        .await?;
        let before = (
            proc::cpu_time(standalone.pid()).unwrap_or_default(),
            proc::tree_cpu_time(azurite_pid),
            own_cpu(),
        );
        let result = http::load(
            standalone.port,
            webhook_requests.clone(),
            concurrency,
            total,
            CHECK_EVERY,
            check_webhook,
        )
        .await?;
        let cpu = (
            proc::cpu_time(standalone.pid())
                .unwrap_or_default()
                .saturating_sub(before.0),
            proc::tree_cpu_time(azurite_pid).saturating_sub(before.1),
            own_cpu().saturating_sub(before.2),
        );
        if result.failures > 0 {
            bail!(
                "webhook: {} failures, e.g. {}",
                result.failures,
                result.first_failure.as_deref().unwrap_or("?")
            );
        }
        println!(
            "webhook c={concurrency}: {:.0} events/s",
            per_second(result.requests, result.elapsed)
        );
        webhook.push((concurrency, result, cpu));
    }
    let standalone_peak = proc::peak_rss_bytes(standalone.pid());
    drop(standalone);

    write_report(
        &args,
        &measured,
        &paced_measured,
        &peaks,
        &webhook,
        standalone_peak,
    )
}

/// One level of part (a) for one binary: a warm-up, then `total` invocations over
/// `concurrency` connections, closed loop or at the `paced` rate (invocations/s).
async fn measure(
    name: &str,
    handler: &Handler,
    requests: &Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    total: usize,
    paced: Option<f64>,
) -> anyhow::Result<Level> {
    let schedule = paced.map_or(Schedule::ClosedLoop, |rate| Schedule::Paced { rate });
    let run = |total: usize, check_every: usize| {
        let requests = requests.clone();
        http::load_with(
            handler.port,
            requests,
            concurrency,
            total,
            schedule,
            check_every,
            check_invocation,
        )
    };
    // Warm-up: connections, allocator, lazy statics.
    run(1_000, 1).await?;
    let (handler_before, bench_before) = (handler.cpu(), own_cpu());
    let result = run(total, CHECK_EVERY).await?;
    let level = Level {
        binary: name.to_string(),
        concurrency,
        offered: paced,
        handler_cpu: handler.cpu().saturating_sub(handler_before),
        bench_cpu: own_cpu().saturating_sub(bench_before),
        result,
    };
    println!("{}", level.summary());
    if level.result.failures > 0 {
        bail!(
            "{} of {} responses failed their check, e.g. {}",
            level.result.failures,
            level.result.requests,
            level.result.first_failure.as_deref().unwrap_or("?")
        );
    }
    Ok(level)
}

/// `aos serve` started as the Functions host starts it, with its stdout drained as the host
/// drains it.
struct Handler {
    child: GroupChild,
    port: u16,
}

impl Handler {
    async fn start(
        binary: &Path,
        backends: &Backends,
        cpu: Option<usize>,
    ) -> anyhow::Result<Handler> {
        let (child, port) =
            common::handler::start_handler_on(binary, &backends.settings_env(), cpu).await?;
        Ok(Handler { child, port })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn cpu(&self) -> Duration {
        proc::cpu_time(self.pid()).unwrap_or_default()
    }
}

/// The fixture event with its `source` on the configured apps host.
pub fn fixture_event(apps_base: &str) -> anyhow::Result<Value> {
    let path = aos_testkit::fixtures_dir().join("../altinn").join(FIXTURE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut event: Value = serde_json::from_str(&text)?;
    let source = event["source"].as_str().context("source")?;
    let path = source
        .split_once("/ttd/")
        .map(|(_, rest)| rest)
        .context("source path")?;
    event["source"] = Value::String(format!("{apps_base}ttd/{path}"));
    Ok(event)
}

/// Host-shaped `EventsReceiver` invocations, each carrying the fixture event with its own id.
fn invocation_requests(apps_base: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let app = FunctionApp::load(&aos_testkit::app_root())?;
    let def = app.function("EventsReceiver")?;
    let event = fixture_event(apps_base)?;
    (0..VARIANTS)
        .map(|_| {
            let mut event = event.clone();
            event["id"] = Value::String(uuid::Uuid::new_v4().to_string());
            let call = HttpCall::new("POST")
                .query("code", "bench-function-key")
                .header("Content-Type", "application/json; charset=utf-8")
                .body(event.to_string().into_bytes());
            let payload = http_request(
                def,
                &app.host.route_prefix,
                &call,
                &SysInfo::now("EventsReceiver"),
            )
            .map_err(anyhow::Error::msg)?;
            // The headers the host sends with every invocation (the harness's `post`): its
            // invocation id, its version, and the `traceparent` of the invocation's activity
            // (Application Insights on, as in Azure), which the handler stamps on the event.
            let invocation_id = uuid::Uuid::new_v4().to_string();
            let traceparent = format!(
                "00-{}-{}-01",
                uuid::Uuid::new_v4().simple(),
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            );
            let user_agent = format!("Azure-Functions-Host/{HOST_VERSION}");
            Ok(http::request_with(
                "POST",
                "/EventsReceiver",
                "application/json; charset=utf-8",
                &[
                    ("X-Azure-Functions-InvocationId", &invocation_id),
                    ("X-Azure-Functions-HostVersion", HOST_VERSION),
                    ("User-Agent", &user_agent),
                    ("traceparent", &traceparent),
                ],
                payload.to_string().as_bytes(),
            ))
        })
        .collect()
}

/// A correct answer: the `res` output is 200 and says queued, and there is one `inbound`
/// queue message (a JSON object with the event's id and the invocation's `traceparent`).
fn check_invocation(body: &[u8]) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(body).context("response is JSON")?;
    let outputs = &v["Outputs"];
    let res = &outputs["res"];
    if res["statusCode"] != 200 {
        bail!("res is not 200: {res}");
    }
    let answer: Value = serde_json::from_str(res["body"].as_str().context("res.body")?)?;
    if answer["status"] != "queued" {
        bail!("not queued: {answer}");
    }
    let inbound = outputs["inbound"]
        .as_object()
        .context("one inbound message")?;
    if inbound.get("id") != answer.get("id") {
        bail!("the queued message is not the event: {v}");
    }
    // The host's `traceparent` travels on with the event (`crate::correlation`).
    if !inbound
        .get("traceparent")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("00-"))
    {
        bail!("the queued event does not carry the invocation's trace: {v}");
    }
    Ok(())
}

fn check_webhook(body: &[u8]) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(body).context("response is JSON")?;
    if v["status"] != "queued" {
        bail!("not queued: {v}");
    }
    Ok(())
}

/// Pins every thread of this process to `cpus` (a `taskset` list). `taskset -a` lists the
/// threads, then sets each: a thread that exits in between (the runtime's blocking pool lets
/// idle ones go) makes it fail with "No such process", so it is tried again a few times.
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let mut status = None;
    for _ in 0..5 {
        let outcome = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("taskset (util-linux)")?;
        if outcome.success() {
            return Ok(());
        }
        status = Some(outcome);
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("taskset -a -p -c {cpus} failed 5 times: {status:?}")
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn own_cpu() -> Duration {
    proc::cpu_time(std::process::id()).unwrap_or_default()
}

fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Microseconds below 10 ms, else milliseconds (a paced level the handler cannot keep up with
/// queues for seconds).
fn latency(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        micros(d)
    } else {
        millis(d)
    }
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

impl Level {
    fn summary(&self) -> String {
        let mut latencies = self.result.latencies.clone();
        format!(
            "{} c={}{}: {:.0} inv/s, p50 {} p99 {}, handler CPU {:.0} ms/1000",
            self.binary,
            self.concurrency,
            self.offered
                .map_or(String::new(), |rate| format!(" paced at {rate:.0}/s")),
            per_second(self.result.requests, self.result.elapsed),
            latency(percentile(&mut latencies, 50.0)),
            latency(percentile(&mut latencies, 99.0)),
            self.cpu_per_1000().as_secs_f64() * 1e3,
        ) + &self.offered.map_or(String::new(), |_| {
            format!(
                "; round trip p99 {}, held by client {}",
                latency(percentile(&mut self.result.round_trips.clone(), 99.0)),
                self.held_by_client()
            )
        })
    }

    fn cpu_per_1000(&self) -> Duration {
        self.handler_cpu
            .mul_f64(1000.0 / self.result.requests as f64)
    }

    fn row(&self) -> Vec<String> {
        let mut latencies = self.result.latencies.clone();
        let cpu = self.handler_cpu.as_secs_f64();
        vec![
            format!("`{}`", self.binary),
            self.concurrency.to_string(),
            self.result.requests.to_string(),
            format!(
                "{:.0}",
                per_second(self.result.requests, self.result.elapsed)
            ),
            micros(percentile(&mut latencies, 50.0)),
            micros(percentile(&mut latencies, 90.0)),
            micros(percentile(&mut latencies, 99.0)),
            millis(percentile(&mut latencies, 100.0)),
            format!("{:.0} ms", self.cpu_per_1000().as_secs_f64() * 1e3),
            if cpu > 0.0 {
                format!("{:.0}", self.result.requests as f64 / cpu)
            } else {
                "–".into()
            },
            format!("{:.2} s", self.bench_cpu.as_secs_f64()),
            format!("{}/{}", self.result.checked, self.result.failures),
        ]
    }
}

impl Level {
    /// A paced level the handler kept up with: it answered at ≥ 98 % of the offered rate.
    /// Otherwise the requests queued for the whole run, and its latencies measure how long the
    /// run was, not the handler.
    fn kept_up(&self) -> bool {
        let achieved = per_second(self.result.requests, self.result.elapsed);
        self.offered
            .is_some_and(|offered| achieved >= 0.98 * offered)
    }

    /// The requests the load generator sent 1 ms or more after they could go.
    fn held_by_client(&self) -> usize {
        let late = Duration::from_millis(1);
        let held = &self.result.held_by_client;
        held.iter().filter(|&&held| held >= late).count()
    }

    /// A row of the paced table.
    fn paced_row(&self) -> Vec<String> {
        let mut latencies = self.result.latencies.clone();
        vec![
            format!("`{}`", self.binary),
            self.concurrency.to_string(),
            self.result.requests.to_string(),
            format!("{:.0}", self.offered.unwrap_or_default()),
            format!(
                "{:.0}",
                per_second(self.result.requests, self.result.elapsed)
            ),
            if self.kept_up() {
                "yes".into()
            } else {
                "**no**".into()
            },
            latency(percentile(&mut latencies, 50.0)),
            latency(percentile(&mut latencies, 90.0)),
            latency(percentile(&mut latencies, 99.0)),
            latency(percentile(&mut latencies, 99.9)),
            millis(percentile(&mut latencies, 100.0)),
            latency(percentile(&mut self.result.round_trips.clone(), 99.0)),
            self.held_by_client().to_string(),
            format!("{:.0} ms", self.cpu_per_1000().as_secs_f64() * 1e3),
            format!("{}/{}", self.result.checked, self.result.failures),
        ]
    }
}

fn write_report(
    args: &BenchArgs,
    measured: &[Level],
    paced: &[Level],
    peaks: &[(String, Option<u64>)],
    webhook: &[(usize, LoadResult, (Duration, Duration, Duration))],
    standalone_peak: Option<u64>,
) -> anyhow::Result<()> {
    let mut report = Report::new("ingest", "Webhook ingest", args);
    report.section("(a) The handler alone: host-shaped EventsReceiver invocations");
    report.paragraph(
        "`aos serve` started as the Functions host starts it (its settings, \
         `FUNCTIONS_CUSTOMHANDLER_PORT`, stdout drained); a one-thread load generator in the \
         bench process posts the HTTP-trigger invocation payload the host sends (built by \
         `aos_testkit::invocation` from the fixture event \
         `event-app-instance-process-completed.at22.json`, its source on the configured apps \
         host, 64 distinct event ids) with the headers the host sends (its invocation id and \
         version, and the `traceparent` of the invocation's activity, which the handler stamps \
         on the queued event) over keep-alive loopback connections, one request in flight per \
         connection. Every response must be 200; every 97th is parsed and checked (`res` 200 \
         `queued`, one `inbound` message carrying the event and the trace). The load generator \
         shares the cores with the handler, so *invocations per handler CPU-second* is the \
         handler's own cost, independent of the client. Target (issue 18): ≥ 20,000 \
         invocations/s on one handler core (≤ 50 µs of handler CPU each) with p99 < 2 ms at \
         16–32 connections.",
    );
    report.paragraph(if args.pin {
        "**Pinned** (`--pin`): the handler runs under `taskset -c 0` (its runtime sees one CPU), \
         the load generator's threads are pinned to CPU 1, so the throughput is one handler \
         core's and the client does not take the handler's CPU."
    } else {
        "Not pinned: handler and load generator share both CPUs (`--pin` pins them apart)."
    });
    report.table(
        &[
            "binary",
            "concurrency",
            "invocations",
            "invocations/s",
            "p50",
            "p90",
            "p99",
            "max",
            "handler CPU / 1,000",
            "invocations / handler CPU-s",
            "load-generator CPU",
            "checked/failed",
        ],
        &measured.iter().map(Level::row).collect::<Vec<_>>(),
    );
    if !paced.is_empty() {
        report.paragraph(
            "**Paced** (`--pin` only): the same invocations offered at a fixed rate, request `i` \
             due `i` ÷ *offered/s* after the start and sent by connection `i` mod \
             *connections* (one request in flight per connection; a request whose connection is \
             still waiting for an answer goes as soon as it is free). Latency runs from when the \
             request was due, as wrk2 measures it, so a request held back by a slow answer \
             counts its wait. Above, closed loop, every connection sends again the moment it is \
             answered: the handler runs saturated and each latency includes the queue of all \
             the others (at 32 connections the mean is 32 ÷ throughput). Here the latency is \
             the one a sender sees at a given rate; 20,000/s is the target's. Where the handler \
             did not keep up (*kept up* no: under 98 % of the offered rate achieved), requests \
             queued for the whole run, so those latencies grow with the run's length and say \
             only that the rate is beyond the handler on this machine. Two more columns say \
             which side a tail came from: *round trip p99*, each request from when it was sent \
             to its answer (the handler and the kernel); and *held by client*, the requests the \
             load generator sent 1 ms or more after they could go (due, with their connection \
             free): those count the client's own stalls, not the handler's.",
        );
        report.table(
            &[
                "binary",
                "connections",
                "invocations",
                "offered/s",
                "achieved/s",
                "kept up",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "round trip p99",
                "held by client",
                "handler CPU / 1,000",
                "checked/failed",
            ],
            &paced.iter().map(Level::paced_row).collect::<Vec<_>>(),
        );
    }
    let peak_rows: Vec<Vec<String>> = peaks
        .iter()
        .map(|(name, peak)| {
            vec![
                format!("`{name}`"),
                peak.map_or("–".into(), |b| format!("{:.1} MiB", common::mib(b))),
            ]
        })
        .collect();
    report.table(&["binary", "handler peak RSS (VmHWM)"], &peak_rows);
    if peaks.len() > 1 {
        report.paragraph(
            "`baseline` is the binary given in `AOS_BENCH_BASELINE` (the product before this \
             change), run interleaved with `aos` at each level in the same run.",
        );
    }
    let series: Vec<Series> = peaks
        .iter()
        .map(|(name, _)| Series {
            name: name.clone(),
            points: measured
                .iter()
                .filter(|l| &l.binary == name)
                .map(|l| {
                    (
                        l.concurrency as f64,
                        per_second(l.result.requests, l.result.elapsed),
                    )
                })
                .collect(),
        })
        .collect();
    if !args.no_write {
        Chart {
            title: "EventsReceiver invocations/s vs concurrency",
            x_label: "concurrent connections",
            y_label: "invocations/s",
            x_scale: XScale::Log,
        }
        .draw(&report.asset_path("ingest-handler.svg"), &series)?;
        report.image("invocations/s vs concurrency", "ingest-handler.svg");
    }

    report.section("(b) Through the standalone webhook into the Azurite queue");
    report.paragraph(
        "`aos run` with its webhook secret (`POST /api/EventsReceiver?code=…`); each event is \
         written to the `events-inbound` queue in Azurite before the 200. The events name one \
         existing tiny instance: the worker of `aos run` drains the queue at the same time (one \
         instance read from the simulator and one manifest read per event, after the first), so \
         the `aos` CPU below is webhook plus worker, and the bench process's CPU includes the \
         in-process Altinn simulator answering the worker.",
    );
    let rows: Vec<Vec<String>> = webhook
        .iter()
        .map(|(concurrency, result, (aos, azurite, bench))| {
            let mut latencies = result.latencies.clone();
            let n = result.requests as f64 / 1000.0;
            vec![
                concurrency.to_string(),
                result.requests.to_string(),
                format!("{:.0}", per_second(result.requests, result.elapsed)),
                millis(percentile(&mut latencies, 50.0)),
                millis(percentile(&mut latencies, 90.0)),
                millis(percentile(&mut latencies, 99.0)),
                millis(percentile(&mut latencies, 100.0)),
                format!("{:.0} ms", aos.as_secs_f64() * 1e3 / n),
                format!("{:.0} ms", azurite.as_secs_f64() * 1e3 / n),
                format!("{:.0} ms", bench.as_secs_f64() * 1e3 / n),
            ]
        })
        .collect();
    report.table(
        &[
            "concurrency",
            "events",
            "events/s",
            "p50",
            "p90",
            "p99",
            "max",
            "aos CPU / 1,000",
            "Azurite CPU / 1,000",
            "bench process CPU / 1,000",
        ],
        &rows,
    );
    report.paragraph(&format!(
        "`aos run` peak RSS: {}.",
        standalone_peak.map_or("–".into(), |b| format!("{:.1} MiB", common::mib(b)))
    ));

    report.section("Comparison");
    let best = |rows: &[(usize, f64)]| rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let handler_best = best(
        &measured
            .iter()
            .filter(|l| l.binary == "aos")
            .map(|l| {
                (
                    l.concurrency,
                    per_second(l.result.requests, l.result.elapsed),
                )
            })
            .collect::<Vec<_>>(),
    );
    let webhook_best = best(
        &webhook
            .iter()
            .map(|(c, r, _)| (*c, per_second(r.requests, r.elapsed)))
            .collect::<Vec<_>>(),
    );
    report.table(
        &["path", "best throughput", "ratio"],
        &[
            vec![
                "(a) handler alone (queue write left to the host)".into(),
                format!("{handler_best:.0}/s"),
                "1".into(),
            ],
            vec![
                "(b) standalone webhook, queue write in Azurite".into(),
                format!("{webhook_best:.0}/s"),
                format!("{:.3}", webhook_best / handler_best.max(f64::EPSILON)),
            ],
        ],
    );
    report.finish()
}

//! What every benchmark shares: the facts of the machine it ran on, `/proc` readings of a
//! child process (RSS, CPU time), a Markdown report written to `docs/benchmarks/<name>.md`, and
//! SVG line charts.
//!
//! Benchmarks are commands, not timed tests (`cargo bench --bench <name>`): machines here are
//! noisy, so each one compares ratios measured in the same run and records the figures with the
//! machine, the command and the date, instead of asserting a duration.
//!
//! Each bench target compiles this module on its own and uses only part of it (Azurite, the
//! simulator and the Functions host harness come from the `aos-testkit` crate).
#![allow(dead_code)]

pub mod handler;
pub mod http;
pub mod plot;
pub mod proc;
pub mod report;

use std::time::Duration;

/// The `main` of a bench that runs on a multi-thread runtime: its arguments parsed, then `run`.
pub fn run_on_runtime<F, Fut>(run: F) -> anyhow::Result<()>
where
    F: FnOnce(BenchArgs) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let args = BenchArgs::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Options every bench understands after `--`: `cargo bench --bench archive -- --quick`.
#[derive(Clone, Debug, Default)]
pub struct BenchArgs {
    /// Smaller sizes and counts: checks that the bench works, numbers not for the record.
    pub quick: bool,
    /// Do not write `docs/benchmarks/`, only print.
    pub no_write: bool,
    /// Only the request budget per instance (`archive`): counts, no throughput; printed, not
    /// written (the record is the whole bench's).
    pub requests_only: bool,
    /// Only the product / minimal-pipeline ratios (`archive`): printed, not written.
    pub minimal_only: bool,
    /// `ingest`: the handler pinned to CPU 0, the load generator to CPU 1 (`taskset`), so the
    /// figures are one handler core's.
    pub pin: bool,
}

impl BenchArgs {
    /// Parses the process arguments, ignoring the `--bench` flag cargo passes to every bench.
    pub fn parse() -> BenchArgs {
        let mut args = BenchArgs::default();
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => args.quick = true,
                "--no-write" => args.no_write = true,
                "--requests-only" => {
                    args.requests_only = true;
                    args.no_write = true;
                }
                "--minimal-only" => {
                    args.minimal_only = true;
                    args.no_write = true;
                }
                "--pin" => args.pin = true,
                "--bench" => {}
                other => eprintln!("ignoring unknown bench argument {other:?}"),
            }
        }
        args
    }
}

/// `p`-th percentile (0–100) of unsorted samples, by nearest rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Bytes as MiB with two decimals.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Throughput in MiB/s.
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    mib(bytes) / elapsed.as_secs_f64().max(f64::EPSILON)
}

//! `aos` — the altinn-aos command line. The commands live in [`altinn_aos::cli`], one file
//! each; this parses the arguments, sets up the process (allocator, logs, async runtime), runs
//! the command and turns its error into one line on stderr and the exit status.
//!
//! - `aos serve` runs the Azure Functions custom handler (the default when the Functions host
//!   starts it, i.e. when `FUNCTIONS_CUSTOMHANDLER_PORT` is set).
//! - `aos run` runs the same steps without Azure Functions (webhook + queue workers).
//! - `aos dev` runs the whole system locally with a demo batch (Azurite, simulator, `aos run`).
//! - `aos simulator` runs the Altinn simulator for local development.
//! - `aos reconcile` queues completed instances whose events never arrived.
//! - `aos catch-up` queues the events of the Altinn Events pull API after each app's cursor.
//! - `aos subscriptions` adds, lists, shows, removes and verifies Altinn Events subscriptions.
//! - `aos check-config` loads the settings and the Maskinporten key, does one grant and one
//!   Altinn token exchange, and prints what it found (exit 1 with one line if a step fails).
//! - `aos poison` lists or replays the poison queues.
//!
//! Every command reads the same settings (the environment; also a `local.settings.json`-shaped
//! file only when `--settings FILE` names one) and exits with status 2 and one line naming every
//! setting that is missing or malformed.

use std::process::ExitCode;

use clap::Parser;

use altinn_aos::cli::{self, Cli, CliError, Invocation};

fn main() -> ExitCode {
    return_freed_blocks_to_the_system();
    let cli = Cli::parse();
    cli::telemetry::init(cli.log_level(), cli.log_streams());
    // Before the async runtime: the exporter's client is a blocking one. Dropped (flushed)
    // when main returns.
    let _metrics = altinn_aos::metrics::init();
    match cli.into_command().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(line) = e.line() {
                eprintln!("{line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(invocation: Invocation) -> Result<(), CliError> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(cli::run(invocation))
}

/// Element blocks are 4 MiB buffers that come and go by the hundred. glibc's allocator serves
/// allocations that large with `mmap` and unmaps them on free, but after the first such free it
/// raises that threshold to the freed size, so later blocks come from the heap, which keeps
/// freed memory and fragments: 24 concurrent invocations then left the process at ~90 MiB RSS
/// (docs/benchmarks/memory.md). A fixed threshold of 1 MiB keeps every block a mapping of its
/// own, returned to the system when the block is freed.
fn return_freed_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

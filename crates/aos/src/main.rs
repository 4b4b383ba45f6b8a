//! `aos` — the altinn-aos command line.
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
//!
//! Every command reads the same settings (environment, else `local.settings.json` `Values`) and
//! exits with status 2 and one line naming the setting when a setting is missing or malformed.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use altinn_aos::auth::check::CheckError;
use altinn_aos::config::{SettingSource, Settings};
use altinn_aos::pipeline::Pipeline;
use altinn_aos::standalone::RunOptions;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "aos",
    version,
    about = "Altinn 3 Application Owner System: receive, archive, confirm"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Azure Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.
    Serve {
        /// Port to listen on (the Functions host passes it in the environment).
        #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT")]
        port: u16,
    },
    /// Run without Azure Functions: the webhook at /api/EventsReceiver (secured by
    /// `?code=<WebhookSecret>`) and workers on the storage queues.
    Run {
        /// Address the webhook listens on.
        #[arg(long, default_value = "127.0.0.1:7071")]
        listen: std::net::SocketAddr,
        /// Messages worked on at once, per queue.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds a failed message waits before its next attempt.
        #[arg(long, default_value_t = 30)]
        retry_delay_secs: u64,
        /// Seconds a received message stays hidden (renewed while it is worked on).
        #[arg(long, default_value_t = 60)]
        lease_secs: u64,
    },
    #[cfg(feature = "dev")]
    /// The local demo: Azurite, the Altinn simulator and `aos run`, a subscription, a batch of
    /// sample instances archived and confirmed; then keeps running until Ctrl-C.
    Dev {
        /// Where the webhook listens.
        #[arg(long, default_value = "127.0.0.1:7071")]
        listen: std::net::SocketAddr,
        /// Where the Altinn simulator listens.
        #[arg(long, default_value = "127.0.0.1:5101")]
        simulator: std::net::SocketAddr,
        /// Sample instances to complete.
        #[arg(long, default_value_t = 20)]
        instances: usize,
        /// Exit after the summary instead of waiting for Ctrl-C.
        #[arg(long)]
        exit_after_summary: bool,
    },
    /// Inspect or replay the poison queues (`events-inbound-poison`, `events-confirmation-poison`).
    Poison {
        #[command(subcommand)]
        action: PoisonAction,
    },
    #[cfg(feature = "dev")]
    /// Run the Altinn simulator (Storage, app API, token exchange) for local development.
    Simulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5101")]
        listen: std::net::SocketAddr,
        /// Bearer token the simulator accepts (matches `AltinnToken` in local.settings.json).
        #[arg(long, default_value = "dev-token")]
        token: String,
    },
    /// Check the settings and the Maskinporten key with one grant and one Altinn token exchange.
    CheckConfig,
    /// Find completed instances whose events never arrived (Storage's instance query for
    /// `ReconcileApps`, or every app of `Org`) and queue each one not yet archived and confirmed
    /// on the inbound queue; ends with a summary line.
    Reconcile {
        /// Start of the time-window sweep on `process.ended` (RFC 3339, or a date
        /// `YYYY-MM-DD`); default: 7 days ago.
        #[arg(long)]
        since: Option<String>,
        /// Report what would be queued; queue nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Catch up from the Altinn Events pull API: for each app of `ReconcileApps`, queue the
    /// events after its cursor (in `aos-state`) that the webhook would have queued, then move
    /// the cursor; ends with a summary line.
    CatchUp {
        /// Start for an app without a cursor (RFC 3339, or a date `YYYY-MM-DD`); default:
        /// the setting EventsCatchUpFrom, else one day ago.
        #[arg(long)]
        from: Option<String>,
        /// Events per page (1–1000).
        #[arg(long)]
        page_size: Option<usize>,
        /// Report what would be queued; queue nothing and move no cursor.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage the Altinn Events subscriptions that feed the webhook.
    Subscriptions {
        #[command(subcommand)]
        action: SubscriptionAction,
    },
}

impl Command {
    /// The demo and check-config print their own output; step logs would drown it (AOS_LOG
    /// brings them back). Warnings (e.g. certificate expiry) still show.
    fn prints_its_own_output(&self) -> bool {
        match self {
            #[cfg(feature = "dev")]
            Command::Dev { .. } => true,
            Command::CheckConfig | Command::Subscriptions { .. } => true,
            _ => false,
        }
    }
}

#[derive(Subcommand)]
enum SubscriptionAction {
    /// Subscribe to an app's events (source filter `{AppsBaseUrl}{org}/{app}`) and wait until
    /// Altinn has validated the endpoint.
    Add {
        /// The app, `org/app`.
        #[arg(long)]
        app: String,
        /// Event type filter (default `app.instance.process.completed`).
        #[arg(long = "type")]
        type_filter: Option<String>,
        /// Webhook URL (default: setting AltinnApplicationOwnerSystemSettings__WebhookUrl).
        #[arg(long)]
        endpoint: Option<String>,
        /// Seconds to wait for validation.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// List this org's subscriptions (id, validated, source, type, endpoint without its query).
    List,
    /// Show one subscription as JSON (endpoint query redacted).
    Show { id: u64 },
    /// Delete a subscription.
    Remove { id: u64 },
    /// Check every expected subscription (`--app`, else ReconcileApps) exists and is validated;
    /// re-post (idempotent) those that are not.
    Verify {
        /// Expected app `org/app` (repeatable); default: ReconcileApps.
        #[arg(long = "app")]
        apps: Vec<String>,
        #[arg(long = "type")]
        type_filter: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
}

#[derive(Subcommand)]
enum PoisonAction {
    /// Show poisoned messages: event, instance and the last recorded error.
    List,
    /// Move poisoned messages back to their queue (after fixing the cause).
    Replay {
        /// Which queue's poison to replay: inbound, confirmation or all.
        #[arg(long, default_value = "all")]
        queue: String,
        /// Replay only these event ids (repeatable); default: every message.
        #[arg(long = "event-id")]
        event_ids: Vec<String>,
    },
}

fn main() -> ExitCode {
    return_freed_blocks_to_the_system();
    let cli = Cli::parse();
    let quiet = cli
        .command
        .as_ref()
        .is_some_and(Command::prints_its_own_output);
    init_tracing(if quiet { "warn" } else { "info" });
    let command = match cli.command {
        Some(command) => command,
        None => match std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
        {
            Some(port) => Command::Serve { port },
            None => {
                eprintln!(
                    "aos: no command given and FUNCTIONS_CUSTOMHANDLER_PORT is not set; see `aos --help`"
                );
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("aos: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve { port } => {
            let pipeline = match load_settings() {
                Ok(settings) => Pipeline::from_settings(settings)
                    .await
                    .map_err(|e| e.to_string()),
                Err(line) => Err(line),
            };
            let pipeline = match pipeline {
                Ok(pipeline) => pipeline,
                Err(line) => {
                    eprintln!("aos: {line}");
                    return ExitCode::from(2);
                }
            };
            match altinn_aos::functions::serve(pipeline, port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("aos: cannot serve on 127.0.0.1:{port}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            listen,
            concurrency,
            retry_delay_secs,
            lease_secs,
        } => {
            let pipeline = match load_pipeline().await {
                Ok(pipeline) => pipeline,
                Err(line) => {
                    eprintln!("aos: {line}");
                    return ExitCode::from(2);
                }
            };
            let mut options = RunOptions {
                listen,
                ..RunOptions::default()
            };
            options.worker.concurrency = concurrency;
            options.worker.retry_delay = Duration::from_secs(retry_delay_secs);
            options.worker.lease = Duration::from_secs(lease_secs.max(3));
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                altinn_aos::shutdown_signal().await;
                tracing::info!("shutting down: finishing in-flight messages");
                trigger.cancel();
            });
            match altinn_aos::standalone::run(pipeline, options, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("aos: {e}");
                    ExitCode::from(2)
                }
            }
        }
        #[cfg(feature = "dev")]
        Command::Dev {
            listen,
            simulator,
            instances,
            exit_after_summary,
        } => {
            let options = altinn_aos::dev::DevOptions {
                listen,
                simulator,
                instances,
                exit_after_summary,
            };
            match altinn_aos::dev::run(options).await {
                Ok(summary) if summary.confirmed == summary.instances => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("aos dev: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig => {
            let settings = match load_settings() {
                Ok(settings) => settings,
                Err(line) => {
                    eprintln!("aos: {line}");
                    return ExitCode::from(2);
                }
            };
            let mut stdout = std::io::stdout();
            match altinn_aos::auth::check::check_config(&settings, &mut stdout).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(CheckError::Settings(e)) => {
                    eprintln!("aos: {e}");
                    ExitCode::from(2)
                }
                Err(CheckError::Failed(line)) => {
                    eprintln!("aos: check-config: {line}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reconcile { since, dry_run } => {
            match altinn_aos::reconcile_cli::run(since.as_deref(), dry_run).await {
                Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(altinn_aos::reconcile_cli::CliError::Usage(line)) => {
                    eprintln!("aos: {line}");
                    ExitCode::from(2)
                }
                Err(altinn_aos::reconcile_cli::CliError::Failed(line)) => {
                    eprintln!("aos reconcile: {line}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CatchUp {
            from,
            page_size,
            dry_run,
        } => {
            use altinn_aos::reconcile_cli::CliError;
            let args = altinn_aos::catchup_cli::Args {
                from,
                page_size,
                dry_run,
            };
            match altinn_aos::catchup_cli::run(args).await {
                Ok(run) if run.failed() == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(CliError::Usage(line)) => {
                    eprintln!("aos: {line}");
                    ExitCode::from(2)
                }
                Err(CliError::Failed(line)) => {
                    eprintln!("aos catch-up: {line}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Subscriptions { action } => {
            use altinn_aos::subscriptions_cli::{Action, CliError};
            let action = match action {
                SubscriptionAction::Add {
                    app,
                    type_filter,
                    endpoint,
                    wait_secs,
                } => Action::Add {
                    app,
                    type_filter,
                    endpoint,
                    wait: Duration::from_secs(wait_secs),
                },
                SubscriptionAction::List => Action::List,
                SubscriptionAction::Show { id } => Action::Show { id },
                SubscriptionAction::Remove { id } => Action::Remove { id },
                SubscriptionAction::Verify {
                    apps,
                    type_filter,
                    endpoint,
                    wait_secs,
                } => Action::Verify {
                    apps,
                    type_filter,
                    endpoint,
                    wait: Duration::from_secs(wait_secs),
                },
            };
            match altinn_aos::subscriptions_cli::run(action).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(CliError::Usage(line)) => {
                    eprintln!("aos: {line}");
                    ExitCode::from(2)
                }
                Err(CliError::Failed(line)) => {
                    eprintln!("aos subscriptions: {line}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Poison { action } => match poison(action).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("aos poison: {e:#}");
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "dev")]
        Command::Simulator { listen, token } => {
            let config = altinn_sim::SimulatorConfig { listen, token };
            match altinn_sim::start(config).await {
                Ok(handle) => {
                    println!("Altinn simulator listening on {}", handle.base_url());
                    altinn_aos::shutdown_signal().await;
                    handle.shutdown();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("aos: simulator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Settings and the pipeline built from them, or the one line to print.
async fn load_pipeline() -> Result<Pipeline, String> {
    let settings = load_settings()?;
    Pipeline::from_settings(settings)
        .await
        .map_err(|e| e.to_string())
}

fn load_settings() -> Result<Settings, String> {
    let source = SettingSource::from_process().map_err(|e| e.to_string())?;
    Settings::from_source(&source).map_err(|e| e.to_string())
}

/// Logs go to stdout (the Functions host records stdout as Information and stderr as Error).
/// JSON lines under the Functions host or with `AOS_LOG_FORMAT=json`; human lines otherwise.
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

fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    let default = format!("{level},typespec_client_core=warn,azure_core=warn,azure_identity=warn");
    let filter = EnvFilter::try_from_env("AOS_LOG").unwrap_or_else(|_| EnvFilter::new(&default));
    let json = std::env::var("AOS_LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or(false)
        || std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn poison(action: PoisonAction) -> anyhow::Result<()> {
    use altinn_aos::archive::Archive;
    use altinn_aos::failures::{Failures, STATE_CONTAINER};
    use altinn_aos::queue::Queue;
    use altinn_aos::storage::StorageEndpoint;

    let settings = load_settings().map_err(anyhow::Error::msg)?;
    let connection = settings.queues.connection.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "setting QueueStorageSettings__ConnectionString: is required by `aos poison` \
             (or its identity-based form, QueueStorageSettings__ConnectionString__queueServiceUri)"
        )
    })?;
    let storage = StorageEndpoint::for_queue_connection(&connection)?;
    let inbound = Queue::new(&storage, &settings.queues.inbound)?;
    let confirmation = Queue::new(&storage, &settings.queues.confirmation)?;
    match action {
        PoisonAction::List => {
            let failures = Failures::new(Archive::new(
                StorageEndpoint::for_blobs(&settings.blob)?,
                STATE_CONTAINER,
            ));
            let entries = altinn_aos::poison::list(&[inbound, confirmation], &failures).await?;
            for entry in &entries {
                println!("{entry}\n");
            }
            println!("{} poisoned message(s)", entries.len());
        }
        PoisonAction::Replay { queue, event_ids } => {
            let queues = match queue.as_str() {
                "inbound" => vec![inbound],
                "confirmation" => vec![confirmation],
                "all" => vec![inbound, confirmation],
                other => {
                    anyhow::bail!("--queue must be inbound, confirmation or all, not `{other}`")
                }
            };
            for queue in &queues {
                let moved = altinn_aos::poison::replay(queue, &event_ids).await?;
                println!(
                    "moved {moved} message(s) from {}-poison back to {}",
                    queue.name(),
                    queue.name()
                );
            }
        }
    }
    Ok(())
}

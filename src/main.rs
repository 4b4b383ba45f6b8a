//! `aos` — the altinn-aos command line.
//!
//! - `aos serve` runs the Azure Functions custom handler (the default when the Functions host
//!   starts it, i.e. when `FUNCTIONS_CUSTOMHANDLER_PORT` is set).
//! - `aos simulator` runs the Altinn simulator for local development.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // check-config prints its own report; only warnings (certificate expiry) go to the log.
    let default_log = if matches!(cli.command, Some(Command::CheckConfig)) {
        "warn"
    } else {
        "info"
    };
    init_tracing(default_log);
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
        Command::Simulator { listen, token } => {
            let config = altinn_aos::simulator::SimulatorConfig { listen, token };
            match altinn_aos::simulator::start(config).await {
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

fn load_settings() -> Result<Settings, String> {
    let source = SettingSource::from_process().map_err(|e| e.to_string())?;
    Settings::from_source(&source).map_err(|e| e.to_string())
}

/// Logs go to stdout (the Functions host records stdout as Information and stderr as Error).
/// JSON lines under the Functions host or with `AOS_LOG_FORMAT=json`; human lines otherwise.
fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("AOS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
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

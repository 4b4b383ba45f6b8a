//! `aos dev`: the local demo ([`crate::dev`]); only with the `dev` feature.

use std::net::SocketAddr;

use super::error::CliError;
use crate::dev::DevOptions;

#[derive(clap::Args)]
pub struct Args {
    /// Where the webhook listens.
    #[arg(long, default_value = "127.0.0.1:7071")]
    listen: SocketAddr,
    /// Where the Altinn simulator listens.
    #[arg(long, default_value = "127.0.0.1:5101")]
    simulator: SocketAddr,
    /// Sample instances to complete.
    #[arg(long, default_value_t = 20)]
    instances: usize,
    /// Exit after the summary instead of waiting for Ctrl-C.
    #[arg(long)]
    exit_after_summary: bool,
}

/// Runs the demo; it fails (exit 1) unless every sample instance was confirmed. The demo makes
/// its own settings, so it loads none.
pub async fn run(args: Args) -> Result<(), CliError> {
    let options = DevOptions {
        listen: args.listen,
        simulator: args.simulator,
        instances: args.instances,
        exit_after_summary: args.exit_after_summary,
    };
    let summary = crate::dev::run(options)
        .await
        .map_err(|e| CliError::failed(format!("{e:#}")).named("dev"))?;
    if summary.confirmed == summary.instances {
        Ok(())
    } else {
        Err(CliError::Reported)
    }
}

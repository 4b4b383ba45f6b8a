//! `aos simulator`: the Altinn simulator ([`altinn_sim`]) alone, for local development; only
//! with the `dev` feature.

use std::net::SocketAddr;

use super::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5101")]
    listen: SocketAddr,
    /// Bearer token the simulator accepts (matches `AltinnToken` in local.settings.json).
    #[arg(long, default_value = "dev-token")]
    token: String,
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(Args { listen, token }: Args) -> Result<(), CliError> {
    let config = altinn_sim::SimulatorConfig { listen, token };
    let handle = altinn_sim::start(config)
        .await
        .map_err(|e| CliError::failed(format!("simulator: {e}")))?;
    println!("Altinn simulator listening on {}", handle.base_url());
    crate::shutdown_signal().await;
    handle.shutdown();
    Ok(())
}

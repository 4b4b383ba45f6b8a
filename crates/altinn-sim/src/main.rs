//! `altinn-sim` — the Altinn simulator on its own, for local development against an app owner
//! system other than `aos dev` (which starts one itself).
//!
//! `altinn-sim [--listen 127.0.0.1:5101] [--token dev-token]`; `/_sim/instances` creates
//! instances, `/_sim/confirmations` lists what was confirmed (see the library docs).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "altinn-sim",
    version,
    about = "The Altinn simulator: Storage, app API, Events, Maskinporten, token exchange"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5101")]
    listen: SocketAddr,
    /// Bearer token the Storage and app endpoints accept besides exchanged Altinn tokens
    /// (matches `AltinnToken` in the development settings); empty: exchanged tokens only.
    #[arg(long, default_value = "dev-token")]
    token: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = altinn_sim::SimulatorConfig {
        listen: args.listen,
        token: args.token,
    };
    match altinn_sim::start(config).await {
        Ok(handle) => {
            println!("Altinn simulator listening on {}", handle.base_url());
            let _ = tokio::signal::ctrl_c().await;
            handle.shutdown();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("altinn-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

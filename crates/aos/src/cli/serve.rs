//! `aos serve`: the Azure Functions custom handler ([`crate::functions`]).

use super::error::CliError;
use super::settings::{SettingsFrom, load_settings};
use crate::pipeline::Pipeline;

#[derive(clap::Args)]
pub struct Args {
    /// Port to listen on (the Functions host passes it in the environment).
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT")]
    pub(super) port: u16,
}

/// Serves on `127.0.0.1:<port>` until the host stops the process.
/// An unreadable `host.json` `functionTimeout` is a usage error, before anything starts.
pub async fn run(Args { port }: Args, from: &SettingsFrom) -> Result<(), CliError> {
    let deadline = crate::functions::deadline().map_err(CliError::usage)?;
    let pipeline = Pipeline::from_settings(load_settings(from)?).await?;
    crate::functions::serve(pipeline, port, deadline)
        .await
        .map_err(|e| CliError::failed(format!("cannot serve on 127.0.0.1:{port}: {e}")))
}

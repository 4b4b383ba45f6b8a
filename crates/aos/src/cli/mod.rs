//! The `aos` command line: one file per command, dispatched through one [`Command`] enum.
//!
//! - `serve.rs` — `aos serve`: the Azure Functions custom handler (the default when the
//!   Functions host starts `aos`, i.e. when `FUNCTIONS_CUSTOMHANDLER_PORT` is set).
//! - `run.rs` — `aos run`: the same steps without Azure Functions (webhook + queue workers).
//! - `dev.rs` — `aos dev`: the local demo (Azurite, simulator, `aos run`, a sample batch);
//!   `simulator.rs` — `aos simulator`: the Altinn simulator alone. Both only with the `dev`
//!   feature, which the deployment package leaves out.
//! - `check_config.rs` — `aos check-config`: each setting's origin, the key and one token
//!   exchange.
//! - `reconcile.rs` — `aos reconcile`: queue completed instances whose events never arrived.
//! - `catch_up.rs` — `aos catch-up`: queue the events of the Events pull API after each cursor.
//! - `subscriptions.rs` — `aos subscriptions add|list|show|remove|verify`.
//! - `poison.rs` — `aos poison list|replay`.
//! - `status.rs` — `aos status`: the whole system's state and a verdict as the exit status.
//! - `error.rs` — [`CliError`], the one error type: its line and its exit status;
//!   `settings.rs` — the one settings loader.
//! - [`telemetry`] — the log format, level and streams (severity by stream for the host).
//!
//! Every command reads its settings through one loader, `load_settings`: the environment only,
//! unless the global `--settings FILE` names a `local.settings.json`-shaped file ([`Invocation`]
//! carries it to the command). No file is read that the operator did not name, so the
//! checkout's development file cannot fill in what a production shell lacks (under the
//! Functions host, `func start` already passes the file's `Values` as the environment). Every
//! missing or malformed setting is named in one line, exit status 2, whatever the command.

mod catch_up;
mod check_config;
#[cfg(feature = "dev")]
mod dev;
mod error;
mod poison;
mod reconcile;
mod run;
mod serve;
mod settings;
#[cfg(feature = "dev")]
mod simulator;
mod status;
mod subscriptions;
pub mod telemetry;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use error::CliError;
pub use settings::SettingsFrom;

#[derive(Parser)]
#[command(
    name = "aos",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AOS_COMMIT"), ")"),
    about = "Altinn 3 Application Owner System: receive, archive, confirm"
)]
pub struct Cli {
    /// Read the settings also from this `local.settings.json`-shaped file (its `Values`), for
    /// names the environment does not set. Without it, settings come from the environment only.
    #[arg(long, global = true, value_name = "FILE")]
    settings: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// A command and where its settings come from.
pub struct Invocation {
    command: Command,
    settings: SettingsFrom,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the Azure Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.
    Serve(serve::Args),
    /// Run without Azure Functions: the webhook at /api/EventsReceiver (secured by
    /// `?code=<WebhookSecret>`) and workers on the storage queues.
    Run(run::Args),
    #[cfg(feature = "dev")]
    /// The local demo: Azurite, the Altinn simulator and `aos run`, a subscription, a batch of
    /// sample instances archived and confirmed; then keeps running until Ctrl-C.
    Dev(dev::Args),
    /// Inspect or replay the poison queues (`events-inbound-poison`, `events-confirmation-poison`).
    #[command(subcommand)]
    Poison(poison::Action),
    #[cfg(feature = "dev")]
    /// Run the Altinn simulator (Storage, app API, token exchange) for local development.
    Simulator(simulator::Args),
    /// Check the settings and the Maskinporten key with one grant and one Altinn token exchange.
    CheckConfig(check_config::Args),
    /// Find completed instances whose events never arrived (Storage's instance query for
    /// `ReconcileApps`, or every app of `Org`) and queue each one not yet archived and confirmed
    /// on the inbound queue; ends with a summary line.
    Reconcile(reconcile::Args),
    /// Catch up from the Altinn Events pull API: for each app of `ReconcileApps`, queue the
    /// events after its cursor (in `aos-state`) that the webhook would have queued, then move
    /// the cursor; ends with a summary line.
    CatchUp(catch_up::Args),
    /// Manage the Altinn Events subscriptions that feed the webhook.
    #[command(subcommand)]
    Subscriptions(subscriptions::Action),
    /// The whole system's state on one screen: queue and poison depths, recent failures,
    /// holds, reconcile and catch-up progress, subscriptions, the key and its certificate, the
    /// archive reachable and writable. Exit 0 healthy, 1 degraded, 3 broken.
    Status(status::Args),
}

impl Cli {
    /// The default log level: the demo, check-config and subscriptions print their own output
    /// and step logs would drown it (`AOS_LOG` brings them back); warnings (e.g. certificate
    /// expiry) still show.
    pub fn log_level(&self) -> &'static str {
        let quiet = match &self.command {
            #[cfg(feature = "dev")]
            Some(Command::Dev(_)) => true,
            Some(Command::CheckConfig(_) | Command::Subscriptions(_) | Command::Status(_)) => true,
            _ => false,
        };
        if quiet { "warn" } else { "info" }
    }

    /// Where log lines go: the runtimes split them by severity for the Functions host (and a
    /// container platform) to see it; every other command keeps stdout for its data.
    pub fn log_streams(&self) -> telemetry::Streams {
        match &self.command {
            Some(Command::Serve(_) | Command::Run(_)) => telemetry::Streams::BySeverity,
            None if std::env::var_os("FUNCTIONS_CUSTOMHANDLER_PORT").is_some() => {
                telemetry::Streams::BySeverity
            }
            _ => telemetry::Streams::Stderr,
        }
    }

    /// The command to run. Without one, `serve` when the Functions host started `aos` (it
    /// passes the port in `FUNCTIONS_CUSTOMHANDLER_PORT` and no arguments).
    pub fn into_command(self) -> Result<Invocation, CliError> {
        let settings = SettingsFrom {
            file: self.settings,
        };
        let command = match self.command {
            Some(command) => command,
            None => std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .map(|port| Command::Serve(serve::Args { port }))
                .ok_or_else(|| {
                    CliError::usage(
                        "no command given and FUNCTIONS_CUSTOMHANDLER_PORT is not set; see `aos --help`",
                    )
                })?,
        };
        Ok(Invocation { command, settings })
    }
}

/// Runs one command to its end.
pub async fn run(Invocation { command, settings }: Invocation) -> Result<(), CliError> {
    let settings = &settings;
    match command {
        Command::Serve(args) => serve::run(args, settings).await,
        Command::Run(args) => run::run(args, settings).await,
        #[cfg(feature = "dev")]
        Command::Dev(args) => {
            settings.refuse_file("dev")?;
            dev::run(args).await
        }
        Command::Poison(action) => poison::run(action, settings).await,
        #[cfg(feature = "dev")]
        Command::Simulator(args) => {
            settings.refuse_file("simulator")?;
            simulator::run(args).await
        }
        Command::CheckConfig(args) => check_config::run(args, settings).await,
        Command::Reconcile(args) => reconcile::run(args, settings).await,
        Command::CatchUp(args) => catch_up::run(args, settings).await,
        Command::Subscriptions(action) => subscriptions::run(action, settings).await,
        Command::Status(args) => status::run(args, settings).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command says what it does and every flag and argument what it means: an empty
    /// `--help` line leaves an operator guessing.
    #[test]
    fn every_command_and_flag_has_help_text() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} (the command)"));
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "aos", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }

    /// Every `aos …` line in the documentation's shell blocks (README, CONTRIBUTING, docs/)
    /// is a command line `aos` accepts: the documented commands and flags exist. Usage
    /// notation is read as written: `[…]` optional parts are included, `<…>` placeholders and
    /// `N` become a value, `…`/`...` repetition marks are dropped.
    #[test]
    fn every_documented_command_line_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
        for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
            let path = entry.expect("a docs entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
        // `<…>` placeholders become a value.
        let fill = |line: &str| {
            let mut out = String::new();
            let mut rest = line;
            while let Some(start) = rest.find('<') {
                out.push_str(&rest[..start]);
                match rest[start..].find('>') {
                    Some(end) => {
                        out.push('1');
                        rest = &rest[start + end + 1..];
                    }
                    None => {
                        rest = &rest[start..];
                        break;
                    }
                }
            }
            out.push_str(rest);
            out
        };
        let mut checked = 0;
        let mut refused = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("a docs file");
            let mut in_shell = false;
            for line in text.lines() {
                let trimmed = line.trim_start();
                if let Some(info) = trimmed.strip_prefix("```") {
                    in_shell = !in_shell && matches!(info.trim(), "sh" | "bash" | "console");
                    continue;
                }
                let command = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
                if !in_shell || !command.starts_with("aos ") {
                    continue;
                }
                let command = command.split(" #").next().unwrap_or_default();
                let command = fill(command);
                let words: Vec<String> = command
                    .replace(['[', ']', '"', '\''], " ")
                    .split_whitespace()
                    .filter(|w| !matches!(*w, "..." | "…" | "|"))
                    .map(|w| {
                        if w == "N" {
                            "1".to_string()
                        } else {
                            w.to_string()
                        }
                    })
                    .collect();
                checked += 1;
                if let Err(e) = <super::Cli as clap::Parser>::try_parse_from(&words) {
                    refused.push(format!(
                        "{}: `{}`: {}",
                        file.display(),
                        words.join(" "),
                        e.to_string().lines().next().unwrap_or_default()
                    ));
                }
            }
        }
        assert!(
            checked >= 10,
            "only {checked} documented command lines found"
        );
        assert!(
            refused.is_empty(),
            "documented but refused:\n{}",
            refused.join("\n")
        );
    }
}

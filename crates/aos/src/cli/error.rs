//! The one error every command returns: the line `main` prints and the exit status.

use std::fmt::Display;

use crate::config::SettingsError;
use crate::redact::redact;

/// Why a command stopped. `main` prints [`CliError::line`] on stderr and exits with
/// [`CliError::exit_code`]; no command prints its own error or picks its own status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A setting or an argument is missing or malformed; the line names it. Exit 2, like clap's
    /// own usage errors, so a script can tell "fix the configuration" from "try again".
    #[error("{0}")]
    Usage(String),
    /// The command could not do its work: a refused grant, a subscription that did not
    /// validate, a port in use. Exit 1.
    #[error("{0}")]
    Failed(String),
    /// A dependency (storage, Altinn, Key Vault) could not be reached: the same command may
    /// work later without any change. Exit 3.
    #[error("{0}")]
    Unreachable(String),
    /// The run finished and its summary already shows what failed (instances not queued, not
    /// confirmed). Exit 1 with nothing more printed.
    #[error("the summary shows failures")]
    Reported,
    /// The report already shows a dependency that cannot be used (`aos status`: broken).
    /// Exit 3 with nothing more printed.
    #[error("the report shows a dependency that cannot be used")]
    ReportedBroken,
    /// An error reported under the command's name (`aos reconcile: …` rather than `aos: …`);
    /// the exit status is the inner error's.
    #[error("{command}: {error}")]
    Named {
        command: &'static str,
        error: Box<CliError>,
    },
}

impl From<SettingsError> for CliError {
    fn from(e: SettingsError) -> Self {
        CliError::Usage(e.to_string())
    }
}

impl CliError {
    pub fn usage(why: impl Display) -> Self {
        CliError::Usage(why.to_string())
    }

    pub fn failed(why: impl Display) -> Self {
        CliError::Failed(why.to_string())
    }

    pub fn unreachable(why: impl Display) -> Self {
        CliError::Unreachable(why.to_string())
    }

    /// A dependency's error, with its whole cause chain on the line: [`CliError::Unreachable`]
    /// (exit 3) when the chain says it could not be reached at all, else
    /// [`CliError::Failed`] (exit 1: it answered, and refused).
    pub fn dependency(e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        let line = crate::cause::line(e.as_ref());
        if crate::cause::is_unreachable(e.as_ref()) {
            CliError::Unreachable(line)
        } else {
            CliError::Failed(line)
        }
    }

    /// The same error, reported under the command's name (`aos poison: …`).
    pub fn named(self, command: &'static str) -> Self {
        CliError::Named {
            command,
            error: Box::new(self),
        }
    }

    /// Names the command in a failure's line (`aos reconcile: …`); a usage error keeps
    /// `aos: …`, since its line already names the setting or argument to fix.
    pub fn name_failures(self, command: &'static str) -> Self {
        match self {
            CliError::Failed(_) | CliError::Unreachable(_) => self.named(command),
            other => other,
        }
    }

    /// The process's status: 2 for a usage error, 3 for an unreachable dependency, 1 for
    /// everything else (docs/operations.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) | CliError::ReportedBroken => 3,
            CliError::Failed(_) | CliError::Reported => 1,
            CliError::Named { error, .. } => error.exit_code(),
        }
    }

    /// The one line for stderr: `aos: <why>`, or `aos <command>: <why>` for a named error;
    /// `None` when the command's summary already said it. Redacted: an error's text may carry a
    /// credential (a transport error names its request URL).
    pub fn line(&self) -> Option<String> {
        let line = match self {
            CliError::Reported | CliError::ReportedBroken => None,
            CliError::Named { command, error } => {
                error.line().map(|_| format!("aos {command}: {error}"))
            }
            CliError::Usage(_) | CliError::Failed(_) | CliError::Unreachable(_) => {
                Some(format!("aos: {self}"))
            }
        };
        line.map(|line| redact(&line).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_exits_2_and_failures_exit_1_under_the_command_name_when_named() {
        let usage = CliError::usage("setting X: is required but not set");
        assert_eq!(usage.exit_code(), 2);
        assert_eq!(
            usage.line().as_deref(),
            Some("aos: setting X: is required but not set")
        );

        let failed = CliError::failed("every instance query failed").name_failures("reconcile");
        assert_eq!(failed.exit_code(), 1);
        assert_eq!(
            failed.line().as_deref(),
            Some("aos reconcile: every instance query failed")
        );

        let usage = CliError::usage("--since `x`").name_failures("reconcile");
        assert_eq!(usage.line().as_deref(), Some("aos: --since `x`"));

        let poison = CliError::usage("no queue").named("poison");
        assert_eq!(poison.exit_code(), 2);
        assert_eq!(poison.line().as_deref(), Some("aos poison: no queue"));

        assert_eq!(CliError::Reported.exit_code(), 1);
        assert_eq!(CliError::Reported.named("dev").line(), None);

        let down = CliError::unreachable("storage: connection refused").named("poison");
        assert_eq!(down.exit_code(), 3);
        assert_eq!(
            down.line().as_deref(),
            Some("aos poison: storage: connection refused")
        );
    }

    #[test]
    fn the_line_is_redacted() {
        let failed =
            CliError::failed("listing: error sending request for url (http://h/q?sv=1&sig=SECRET)")
                .named("poison");
        assert_eq!(
            failed.line().as_deref(),
            Some(
                "aos poison: listing: error sending request for url (http://h/q?sv=REDACTED&sig=REDACTED)"
            )
        );
    }
}

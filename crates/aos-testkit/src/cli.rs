//! The `aos` binary run as a user runs a CLI command: its own process, an empty working
//! directory, and only the settings the test gives (in the environment; `aos` reads a settings
//! file only when `--settings` names one).

/// What a command printed and how it exited.
pub struct CliOutput {
    /// The exit code (`-1` if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `aos <args…>` with exactly the settings in `env` (plus `PATH`).
pub async fn run_aos(env: &[(String, String)], args: &[&str]) -> CliOutput {
    let dir = tempfile::tempdir().expect("a temporary working directory");
    let output = tokio::process::Command::new(crate::aos_binary())
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .expect("aos runs");
    CliOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

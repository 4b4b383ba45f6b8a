//! `aos check-config`: prove a deployment can get an Altinn token before it subscribes to
//! events. It first lists each setting it read and where it came from (the environment or the
//! `--settings` file; never a value, some are secrets), so an operator sees at once when a
//! setting did not come from where they thought.
//!
//! Then it does what the first request would do — load the key material, one Maskinporten
//! grant, one Altinn exchange — and reports each step as it goes, so when something fails the
//! lines above the failure show what was already right. Tokens are never printed, only their
//! expiry.

use std::io::Write;

use time::OffsetDateTime;

use super::error::CliError;
use super::settings::SettingsFrom;
use crate::auth::keys::{Expiry, rfc3339};
use crate::config::{Settings, SettingsError, TokenSettings};

#[derive(clap::Args)]
pub struct Args {
    /// Print the findings as one JSON object (`settings`: name → origin, `checks`: finding →
    /// value, `ok`, and `error` when a step failed) instead of lines.
    #[arg(long)]
    json: bool,
}

/// Runs the checks, one line per finding on stdout. A bad setting (the key material included)
/// is a usage error; a step the configured services refused is `aos: check-config: …`, exit 1,
/// and one that could not be reached exit 3. The origins are printed even when a setting is
/// wrong: they help find why.
pub async fn run(Args { json }: Args, from: &SettingsFrom) -> Result<(), CliError> {
    let source = from.source()?;
    let settings = Settings::from_source(&source);
    let origins: Vec<(String, String)> = source
        .found()
        .into_iter()
        .map(|(name, origin)| (name.to_string(), origin.to_string()))
        .collect();
    let result = match settings {
        Err(e) => Err(CliError::usage(e)),
        Ok(settings) => {
            super::settings::register_secrets(&settings);
            // Text findings go out as they are made, so the lines above a failure show what
            // was already right; JSON is one document at the end.
            let mut findings = Vec::new();
            let mut stdout = std::io::stdout();
            if !json {
                // A closed stdout must not turn a good check into a failure.
                let _ = writeln!(stdout, "settings read:");
                for (name, origin) in &origins {
                    let _ = writeln!(stdout, "  {name}: {origin}");
                }
            }
            let out: &mut dyn Write = if json { &mut findings } else { &mut stdout };
            let checked = check_config(&settings, out).await;
            if json {
                print_json(&origins, &findings, checked.as_ref().err());
            }
            checked.map_err(|e| match e {
                CheckError::Settings(e) => CliError::from(e),
                CheckError::Failed(line) => CliError::failed(format!("check-config: {line}")),
                CheckError::Unreachable(line) => {
                    CliError::unreachable(format!("check-config: {line}"))
                }
            })
        }
    };
    if json && let Err(CliError::Usage(why)) = &result {
        print_json(&origins, &[], Some(&CheckError::Failed(why.clone())));
    }
    result
}

/// The findings as one JSON object: each `finding: value` line becomes a member of `checks`.
fn print_json(origins: &[(String, String)], findings: &[u8], error: Option<&CheckError>) {
    let settings: serde_json::Map<String, serde_json::Value> = origins
        .iter()
        .map(|(name, origin)| (name.clone(), origin.clone().into()))
        .collect();
    let mut checks = serde_json::Map::new();
    for line in String::from_utf8_lossy(findings).lines() {
        if let Some((finding, value)) = line.split_once(": ") {
            checks.insert(finding.to_string(), value.into());
        }
    }
    let mut out = serde_json::json!({
        "settings": settings,
        "checks": checks,
        "ok": error.is_none(),
    });
    if let Some(error) = error {
        out["error"] = error.to_string().into();
    }
    println!("{}", crate::redact::redact(&out.to_string()));
}

/// Why the check failed: a setting to fix (the key material is a setting too), or a step that
/// the configured services refused.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{0}")]
    Failed(String),
    /// The service could not be reached at all (exit 3).
    #[error("{0}")]
    Unreachable(String),
}

impl CheckError {
    /// A failed step with its whole cause: unreachable when the chain says so.
    fn step(what: String, e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        let line = format!("{what}: {}", crate::cause::line(e.as_ref()));
        if crate::cause::is_unreachable(e.as_ref()) {
            CheckError::Unreachable(line)
        } else {
            CheckError::Failed(line)
        }
    }
}

/// Runs the checks, writing one line per finding to `out`. The error is the one line to print
/// on failure.
async fn check_config(settings: &Settings, out: &mut dyn Write) -> Result<(), CheckError> {
    let mut say = |line: String| {
        // A closed stdout must not turn a good check into a failure.
        let _ = writeln!(out, "{line}");
    };
    say(format!("platform: {}", settings.platform_base_url));
    say(format!("apps: {}", settings.apps_base_url));
    let m = match &settings.token {
        TokenSettings::Static(_) => {
            say("altinn token: the fixed AltinnToken setting (local development; Maskinporten not used)".into());
            return Ok(());
        }
        TokenSettings::Maskinporten(m) => m,
    };
    say(format!("maskinporten issuer: {}", m.issuer));
    say(format!("client id: {}", m.client_id));
    say(format!("scopes: {}", m.scopes));
    say(format!("key source: {}", m.key.setting()));

    // A key that cannot be read is a setting to fix (exit 2) — unless its source could not be
    // reached at all (Key Vault's name does not resolve, the connection is refused): exit 3.
    let provider = crate::auth::altinn_provider(m, &settings.platform_base_url)
        .await
        .map_err(|e| {
            if crate::cause::is_unreachable(&e) {
                CheckError::Unreachable(e.to_string())
            } else {
                CheckError::Settings(e)
            }
        })?;
    let key = provider
        .maskinporten()
        .key()
        .ok_or_else(|| CheckError::Failed("the Maskinporten key was not loaded".into()))?;
    match key.certificate() {
        Some(cert) => {
            say(format!("certificate subject: {}", cert.subject));
            say(format!("certificate issuer: {}", cert.issuer));
            let status = match cert.expiry(OffsetDateTime::now_utc()) {
                Expiry::Valid { days_left } => format!("valid, {days_left} days left"),
                Expiry::ExpiresSoon { days_left } => {
                    format!("WARNING: expires in {days_left} days; renew it")
                }
                Expiry::Expired => "ERROR: expired".to_string(),
                Expiry::NotYetValid => {
                    format!("ERROR: not valid before {}", rfc3339(cert.not_before))
                }
            };
            say(format!(
                "certificate expires: {} ({status})",
                rfc3339(cert.not_after)
            ));
        }
        None => say(format!("key: {}", key.describe())),
    }

    let mp = provider.maskinporten().fetch_token().await.map_err(|e| {
        CheckError::step(
            format!(
                "grant to {} failed",
                provider.maskinporten().token_endpoint()
            ),
            e,
        )
    })?;
    let lifetime = mp
        .expires_in
        .map(|s| format!("expires in {s} s"))
        .unwrap_or_else(|| "no expires_in".into());
    say(format!(
        "maskinporten: grant accepted ({lifetime}; scope {})",
        mp.scope.as_deref().unwrap_or("not stated")
    ));

    let altinn = provider.exchange(&mp.access_token).await.map_err(|e| {
        CheckError::step(format!("exchange at {} failed", provider.exchange_url()), e)
    })?;
    say(format!(
        "altinn: token exchanged; it expires {} (in {} s)",
        rfc3339(altinn.expires_at),
        altinn.lifetime.as_secs_f64().round()
    ));
    say("ok".into());
    Ok(())
}

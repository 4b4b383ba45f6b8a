//! `aos subscriptions add|list|show|remove|verify`: manage the Altinn Events subscriptions that
//! feed the webhook (spec §2.4–2.6).
//!
//! - The source filter is always built here, exactly `{AppsBaseUrl}{org}/{app}` with no trailing
//!   slash ([`app_source_filter`]); org and app are checked like an event's names.
//! - The endpoint is `--endpoint`, else the setting
//!   `AltinnApplicationOwnerSystemSettings__WebhookUrl` (the EventsReceiver URL with its
//!   `?code=` function key). Its query is never printed.
//! - `add` and `verify` poll `GET /subscriptions/{id}` until Altinn reports `validated: true`:
//!   only validated subscriptions receive events.

use std::time::{Duration, Instant};

use clap::Subcommand;

use super::error::CliError;
use super::settings::{SettingsFrom, register_token_secrets};
use crate::altinn::AltinnClient;
use crate::altinn::subscriptions::{
    DEFAULT_TYPE_FILTER, Subscription, app_source_filter, check_endpoint, parse_app,
    redact_endpoint,
};
use crate::config::{AltinnSettings, SettingSource};
use crate::domain::BaseUrl;
use crate::domain::{AppName, OrgName, Printable};
use crate::redact::redact;

/// The setting that supplies the endpoint when `--endpoint` is not given.
const WEBHOOK_URL_SETTING: &str = "AltinnApplicationOwnerSystemSettings__WebhookUrl";

#[derive(Subcommand)]
pub enum Action {
    /// Subscribe to an app's events (source filter `{AppsBaseUrl}{org}/{app}`) and wait until
    /// Altinn has validated the endpoint.
    Add {
        /// The app, `org/app`.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        delivery: Delivery,
        /// Print the subscription as JSON (endpoint query redacted) instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// List this org's subscriptions (id, validated, source, type, endpoint without its query).
    List {
        /// Print them as a JSON array (endpoint queries redacted) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Show one subscription as JSON (endpoint query redacted).
    Show {
        /// The subscription's id (as `list` shows it).
        id: u64,
    },
    /// Delete a subscription.
    Remove {
        /// The subscription's id (as `list` shows it).
        id: u64,
        /// Print `{"removed": <id>}` instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Check every expected subscription (`--app`, else ReconcileApps) exists and is validated;
    /// re-post (idempotent) those that are not.
    Verify {
        /// Expected app `org/app` (repeatable); default: ReconcileApps.
        #[arg(long = "app")]
        apps: Vec<String>,
        #[command(flatten)]
        delivery: Delivery,
        /// Print one JSON object per app (`app`, `result` ok|fixed|failed, `subscription` or
        /// `error`) as a JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// What a subscription delivers and where, for `add` and `verify`.
#[derive(clap::Args)]
pub struct Delivery {
    /// Event type filter (default `app.instance.process.completed`).
    #[arg(long = "type")]
    type_filter: Option<String>,
    /// Webhook URL (default: setting AltinnApplicationOwnerSystemSettings__WebhookUrl).
    #[arg(long)]
    endpoint: Option<String>,
    /// Seconds to wait for Altinn to validate each subscription posted.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

const CACHE_WARNING: &str = "note: Altinn caches subscriptions for up to an hour; the first \
     events for a new subscription can take that long to arrive (run `aos reconcile` to catch \
     instances completed meanwhile)";

struct Context {
    settings: AltinnSettings,
    source: SettingSource,
    altinn: AltinnClient,
}

/// Only the Altinn settings: the subscriptions API is the platform's, so no storage setting is
/// read (and none is required).
async fn context(from: &SettingsFrom) -> Result<Context, CliError> {
    let source = from.source()?;
    let settings = AltinnSettings::from_source(&source).map_err(CliError::usage)?;
    register_token_secrets(&settings.token);
    let tokens =
        crate::auth::provider_from_settings(&settings.token, &settings.platform_base_url).await?;
    // The app API is never called here; the client wants a host for it all the same.
    let apps = settings
        .apps_base_url
        .clone()
        .unwrap_or_else(|| settings.platform_base_url.clone());
    let altinn = AltinnClient::new(apps, settings.platform_base_url.clone(), tokens);
    Ok(Context {
        settings,
        source,
        altinn,
    })
}

impl Context {
    /// `AppsBaseUrl`, which `add` and `verify` need for the source filter.
    fn apps_base_url(&self) -> Result<&BaseUrl, CliError> {
        self.settings.apps_base_url.as_ref().ok_or_else(|| {
            CliError::usage(
                "setting AltinnApplicationOwnerSystemSettings__AppsBaseUrl: is required by \
                 `aos subscriptions add` and `verify` (the source filter is `{AppsBaseUrl}{org}/{app}`)",
            )
        })
    }

    /// `--endpoint`, else `WebhookUrl`; an absolute https URL (http only on loopback).
    fn endpoint(&self, given: Option<String>) -> Result<String, CliError> {
        let endpoint = given
            .or_else(|| self.source.get(WEBHOOK_URL_SETTING))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "no endpoint: give --endpoint or set {WEBHOOK_URL_SETTING} (the \
                     EventsReceiver URL with its ?code= function key)"
                ))
            })?;
        check_endpoint(&endpoint).map_err(CliError::Usage)
    }

    /// Polls until Altinn reports the subscription validated, or explains why not.
    async fn wait_validated(
        &self,
        sub: Subscription,
        wait: Duration,
    ) -> Result<Subscription, CliError> {
        let started = Instant::now();
        let mut sub = sub;
        loop {
            if sub.validated {
                return Ok(sub);
            }
            if started.elapsed() >= wait {
                let endpoint = sub.end_point.as_deref().map(redact_endpoint);
                return Err(CliError::Failed(format!(
                    "subscription {} is not validated after {}s. Altinn sends a validation \
                     event (type platform.events.validatesubscription) to {} and needs a 2xx \
                     answer: the endpoint is unreachable from Altinn (not public, not https with \
                     a trusted certificate, firewall) or does not answer 2xx (wrong ?code= key, \
                     function app stopped). Fix it and run the same command again: re-posting \
                     is idempotent and triggers a new validation. Only validated subscriptions \
                     receive events.",
                    sub.id,
                    wait.as_secs(),
                    endpoint.as_deref().unwrap_or("the endpoint"),
                )));
            }
            tokio::time::sleep(Duration::from_millis(500).min(wait)).await;
            sub = self
                .altinn
                .get_subscription(sub.id)
                .await
                .map_err(CliError::dependency)?;
        }
    }

    /// POSTs (idempotently) and waits for validation.
    async fn subscribe(
        &self,
        org: &OrgName,
        app: &AppName,
        type_filter: &str,
        endpoint: &str,
        wait: Duration,
    ) -> Result<Subscription, CliError> {
        let filter = app_source_filter(self.apps_base_url()?, org, app);
        let created = self
            .altinn
            .create_subscription(endpoint, &filter, Some(type_filter))
            .await
            .map_err(CliError::dependency)?;
        eprintln!(
            "subscription {} for {filter} ({type_filter}) -> {}: waiting for Altinn to validate \
             the endpoint",
            created.id,
            redact_endpoint(endpoint)
        );
        self.wait_validated(created, wait).await
    }
}

/// One subscription per line; Altinn's text escaped (it comes from outside).
fn line(sub: &Subscription) -> String {
    let endpoint = sub.end_point.as_deref().map(redact_endpoint);
    subscription_line(
        sub.id,
        sub.validated,
        sub.source_filter.as_deref(),
        sub.type_filter.as_deref(),
        endpoint.as_deref(),
    )
}

/// The line `aos subscriptions list` and `aos status` show for a subscription, tab-separated:
/// id, validated or not, source filter, type filter, endpoint (its query already redacted).
pub(super) fn subscription_line(
    id: u64,
    validated: bool,
    source: Option<&str>,
    type_filter: Option<&str>,
    endpoint: Option<&str>,
) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        id,
        if validated {
            "validated"
        } else {
            "NOT-VALIDATED"
        },
        Printable(source.unwrap_or("-")),
        Printable(type_filter.unwrap_or("(any type)")),
        Printable(endpoint.unwrap_or("-")),
    )
}

/// Altinn's JSON for the subscription, its endpoint's query (the function key) left out.
fn redacted_value(sub: &Subscription) -> serde_json::Value {
    let mut raw = sub.raw.clone();
    for key in ["endPoint", "endpoint"] {
        if let Some(e) = raw.get(key).and_then(|v| v.as_str()).map(redact_endpoint) {
            raw[key] = e.into();
        }
    }
    raw
}

fn redacted_json(sub: &Subscription) -> String {
    serde_json::to_string_pretty(&redacted_value(sub)).unwrap_or_default()
}

/// Runs one `aos subscriptions` command, printing to stdout (results) and stderr (progress).
/// Altinn refusing, or a subscription that does not validate, is `aos subscriptions: …`, exit 1.
pub async fn run(action: Action, from: &SettingsFrom) -> Result<(), CliError> {
    subscriptions(action, from)
        .await
        .map_err(|e| e.name_failures("subscriptions"))
}

async fn subscriptions(action: Action, from: &SettingsFrom) -> Result<(), CliError> {
    let ctx = context(from).await?;
    match action {
        Action::Add {
            app,
            delivery:
                Delivery {
                    type_filter,
                    endpoint,
                    wait_secs,
                },
            json,
        } => {
            let wait = Duration::from_secs(wait_secs);
            let (org, app) = parse_app(&app).map_err(CliError::Usage)?;
            let endpoint = ctx.endpoint(endpoint)?;
            let type_filter = type_filter.unwrap_or_else(|| DEFAULT_TYPE_FILTER.into());
            if type_filter.trim().is_empty() {
                return Err(CliError::Usage(
                    "--type must not be empty (an empty type filter matches nothing)".into(),
                ));
            }
            let sub = ctx
                .subscribe(&org, &app, &type_filter, &endpoint, wait)
                .await?;
            if json {
                println!("{}", redacted_json(&sub));
            } else {
                println!("{}", line(&sub));
            }
            eprintln!("{CACHE_WARNING}");
        }
        Action::List { json } => {
            let subs = ctx
                .altinn
                .list_subscriptions()
                .await
                .map_err(CliError::dependency)?;
            if json {
                let all: Vec<_> = subs.iter().map(redacted_value).collect();
                println!("{}", serde_json::Value::Array(all));
            }
            for sub in &subs {
                if !json {
                    println!("{}", line(sub));
                }
                if sub
                    .source_filter
                    .as_deref()
                    .is_some_and(|f| f.ends_with('/'))
                {
                    eprintln!(
                        "warning: subscription {} has a source filter ending in `/`: Altinn \
                         delivers nothing for it; remove it and add the app again",
                        sub.id
                    );
                }
            }
            eprintln!("{} subscription(s)", subs.len());
        }
        Action::Show { id } => {
            let sub = ctx
                .altinn
                .get_subscription(id)
                .await
                .map_err(CliError::dependency)?;
            println!("{}", redacted_json(&sub));
        }
        Action::Remove { id, json } => {
            ctx.altinn
                .delete_subscription(id)
                .await
                .map_err(CliError::dependency)?;
            if json {
                println!("{}", serde_json::json!({ "removed": id }));
            } else {
                println!("removed subscription {id}");
            }
            eprintln!(
                "note: Altinn caches subscriptions for up to an hour; events may still arrive \
                 until then"
            );
        }
        Action::Verify {
            apps,
            delivery:
                Delivery {
                    type_filter,
                    endpoint,
                    wait_secs,
                },
            json,
        } => {
            let wait = Duration::from_secs(wait_secs);
            let expected: Vec<(OrgName, AppName)> = if apps.is_empty() {
                ctx.settings.reconcile_apps.clone()
            } else {
                apps.iter()
                    .map(|a| parse_app(a))
                    .collect::<Result<_, _>>()
                    .map_err(CliError::Usage)?
            };
            if expected.is_empty() {
                return Err(CliError::Usage(
                    "no apps to verify: give --app org/app (repeatable) or set \
                     AltinnApplicationOwnerSystemSettings__ReconcileApps"
                        .into(),
                ));
            }
            let endpoint = ctx.endpoint(endpoint)?;
            let type_filter = type_filter.unwrap_or_else(|| DEFAULT_TYPE_FILTER.into());
            let existing = ctx
                .altinn
                .list_subscriptions()
                .await
                .map_err(CliError::dependency)?;
            let mut problems = Vec::new();
            let mut results = Vec::new();
            let mut reposted = false;
            for (org, app) in &expected {
                let filter = app_source_filter(ctx.apps_base_url()?, org, app);
                let found = existing.iter().find(|s| {
                    s.source_filter.as_deref() == Some(filter.as_str())
                        && s.type_filter.as_deref() == Some(type_filter.as_str())
                        && s.end_point.as_deref() == Some(endpoint.as_str())
                });
                match found {
                    Some(sub) if sub.validated => {
                        results.push(serde_json::json!({"app": filter, "result": "ok", "subscription": redacted_value(sub)}));
                        if !json {
                            println!("ok\t{}", line(sub));
                        }
                    }
                    other => {
                        eprintln!(
                            "{}: {filter} ({type_filter}); re-posting",
                            match other {
                                Some(s) => format!("subscription {} is not validated", s.id),
                                None => "no subscription".to_string(),
                            }
                        );
                        reposted = true;
                        match ctx.subscribe(org, app, &type_filter, &endpoint, wait).await {
                            Ok(sub) => {
                                results.push(serde_json::json!({"app": filter, "result": "fixed", "subscription": redacted_value(&sub)}));
                                if !json {
                                    println!("fixed\t{}", line(&sub));
                                }
                            }
                            Err(e) => {
                                let why = redact(&e.to_string()).into_owned();
                                if !json {
                                    println!("failed\t{filter}\t{why}");
                                }
                                results.push(serde_json::json!({"app": filter, "result": "failed", "error": why}));
                                problems.push(filter);
                            }
                        }
                    }
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(results));
            }
            if reposted {
                eprintln!("{CACHE_WARNING}");
            }
            if !problems.is_empty() {
                return Err(CliError::Failed(format!(
                    "{} of {} subscription(s) are not validated: {}",
                    problems.len(),
                    expected.len(),
                    problems.join(", ")
                )));
            }
            eprintln!("{} subscription(s) present and validated", expected.len());
        }
    }
    Ok(())
}

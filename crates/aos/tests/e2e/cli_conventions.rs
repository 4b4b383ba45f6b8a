//! The CLI's conventions, held by every command (docs/operations.md "Exit codes"): each
//! command reads only the settings it uses, an unreachable dependency is exit 3 with the whole
//! cause on the line (`… Connection refused`), and every command that prints data prints it as
//! JSON with `--json`.

use aos_testkit::cli::run_aos;
use aos_testkit::world::{Backends, element, instance};
use serde_json::Value;

const APPS: &str = "AltinnApplicationOwnerSystemSettings__ReconcileApps";

fn json(out: &str) -> Value {
    serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}):\n{out}"))
}

/// A loopback URL nothing listens on.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}

fn with(env: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<_> = env.iter().filter(|(n, _)| n != name).cloned().collect();
    env.push((name.to_string(), value.to_string()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_need_only_the_platform_and_the_token() {
    let backends = Backends::start().await;
    let env: Vec<(String, String)> = backends
        .settings_env()
        .into_iter()
        .filter(|(name, _)| name.ends_with("__PlatformBaseUrl") || name.ends_with("__AltinnToken"))
        .collect();
    assert_eq!(env.len(), 2);
    let out = run_aos(&env, &["subscriptions", "list"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let out = run_aos(&env, &["subscriptions", "list", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(json(&out.stdout), Value::Array(vec![]));

    let out = run_aos(
        &env,
        &[
            "subscriptions",
            "add",
            "--app",
            "ttd/test-app",
            "--endpoint",
            "https://example.com/api/x",
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("AppsBaseUrl"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_altinn_is_exit_3_with_the_whole_cause() {
    let backends = Backends::start().await;
    let down = closed_url();
    let env = with(
        &backends.settings_env(),
        "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
        &down,
    );
    let env = with(&env, APPS, "ttd/test-app");

    let out = run_aos(&env, &["subscriptions", "list"]).await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let line = out.stderr.trim();
    assert!(line.starts_with("aos subscriptions: "), "{line}");
    assert!(
        line.to_ascii_lowercase().contains("connection refused"),
        "the cause at the end of the chain: {line}"
    );

    let out = run_aos(&env, &["reconcile", "--dry-run"]).await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("connection refused"),
        "the query's reason names the cause: {}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("aos reconcile: Altinn could not be reached"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_data_printing_command_prints_json_with_json() {
    let backends = Backends::start().await;
    backends
        .sim
        .add_instance(instance(91_000, vec![element(64, Some("form.xml"))]));
    let env = with(&backends.settings_env(), APPS, "ttd/test-app");

    let out = run_aos(&env, &["reconcile", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let run = json(&out.stdout);
    assert_eq!(run["dryRun"], true, "{run:#}");
    assert_eq!(run["summary"]["found"], 1, "{run:#}");
    assert_eq!(run["summary"]["queued"], 0, "{run:#}");
    assert_eq!(
        run["wouldQueue"].as_array().map(Vec::len),
        Some(1),
        "{run:#}"
    );

    let out = run_aos(&env, &["catch-up", "--dry-run", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let run = json(&out.stdout);
    assert_eq!(run["dryRun"], true, "{run:#}");
    assert!(run["apps"].is_array(), "{run:#}");
    assert!(run["summary"]["queued"].is_number(), "{run:#}");

    let out = run_aos(&env, &["check-config", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let check = json(&out.stdout);
    assert_eq!(check["ok"], true, "{check:#}");
    assert!(check["settings"].is_object(), "{check:#}");
    assert!(
        !out.stdout.contains(altinn_aos::storage::AZURITE_KEY),
        "settings are named with their origin, never their value"
    );

    let out = run_aos(&env, &["poison", "list", "--json"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    json(&out.stdout);
}

//! `GET /health` in both runtimes: 200 with every check `ok` on a working stack, 503 naming the
//! check that fails (storage stopped, a key that cannot be loaded), never a secret or an error
//! text, and no key needed to ask.

use aos_testkit::host::HttpCall;
use aos_testkit::standalone::Standalone;
use aos_testkit::world::{Backends, TestApp};
use serde_json::{Value, json};

async fn functions_health(app: &TestApp) -> (u16, Value) {
    let outcome = app
        .host
        .invoke_http("Health", HttpCall::new("GET"))
        .await
        .expect("the host reaches the handler");
    assert!(
        outcome.invocation_succeeded,
        "a health answer is a successful invocation"
    );
    let body = serde_json::from_slice(&outcome.body).unwrap_or(Value::Null);
    (outcome.status, body)
}

async fn standalone_health(runtime: &Standalone) -> (u16, Value) {
    let url = runtime
        .webhook_url(None)
        .replace("/api/EventsReceiver", "/health");
    let response = reqwest::get(&url).await.expect("aos run answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// No secret the settings hold appears in a health answer.
fn assert_no_secret(body: &Value, env: &[(String, String)]) {
    let text = body.to_string();
    for (name, value) in env {
        if (name.contains("Key") || name.contains("Token") || name.contains("Secret"))
            && value.len() >= 8
        {
            assert!(!text.contains(value.as_str()), "{name} in {text}");
        }
    }
    assert!(!text.contains("sig="), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn functions_health_is_ok_then_names_storage_when_it_is_down() {
    let mut app = TestApp::spawn().await;
    let (status, body) = functions_health(&app).await;
    assert_eq!(
        (status, body.clone()),
        (
            200,
            json!({"status": "healthy", "checks": {"storage": "ok", "key": "ok"}})
        )
    );
    app.backends.azurite.stop().await.unwrap();
    let (status, body) = functions_health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["storage"], "unreachable");
    assert_eq!(body["checks"]["key"], "ok");
    assert_no_secret(&body, &app.settings_env());
    app.backends.azurite.restart().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aos_run_health_needs_no_code_and_names_a_key_that_cannot_be_loaded() {
    let backends = Backends::start().await;
    let runtime = Standalone::start(&backends).await;
    let (status, body) = standalone_health(&runtime).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy");
    drop(runtime);

    // Maskinporten with its key in a Key Vault that does not answer: the key cannot be had, and
    // the check says so within its bound — without asking Maskinporten.
    let runtime = Standalone::start_with_env(
        &backends,
        &[
            ("AltinnApplicationOwnerSystemSettings__AltinnToken", ""),
            (
                "AltinnApplicationOwnerSystemSettings__MaskinportenBaseAddress",
                "http://127.0.0.1:1/maskinporten",
            ),
            (
                "AltinnApplicationOwnerSystemSettings__MaskinPortenClientId",
                "client",
            ),
            ("KeyVault__KeyVaultURI", "https://127.0.0.1:1/"),
        ],
    )
    .await;
    let (status, body) = standalone_health(&runtime).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["key"], "not loadable", "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");
}

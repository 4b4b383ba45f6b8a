//! `aos poison` end to end against Azurite: every poison queue the product or the host writes,
//! true counts, one line per poisoned event however many copies, a replay that needs a
//! selection and a dry run that changes nothing, storage-only settings, and exit 3 when storage
//! cannot be reached.

use aos_testkit::cli::run_aos;
use aos_testkit::world::Backends;
use serde_json::{Value, json};

/// Only what `aos poison` needs: the queue connection and the archive's account.
fn storage_only(backends: &Backends) -> Vec<(String, String)> {
    backends
        .settings_env()
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("QueueStorageSettings__")
                || name.ends_with("__BlobEndpoint")
                || name.ends_with("__AccountName")
                || name.ends_with("__AccountKey")
        })
        .collect()
}

fn event(n: usize) -> Value {
    json!({
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "specversion": "1.0",
        "type": "app.instance.process.completed",
        "source": format!("http://127.0.0.1:1/ttd/test-app/instances/{}/6b3323c8-7baf-4612-b8a6-{n:012}", 1000 + n),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_poison_queue_is_listed_with_its_true_count_and_copies_of_an_event_once() {
    let backends = Backends::start().await;
    for n in 0..40 {
        backends
            .azurite
            .put_message("events-inbound-poison", &event(n).to_string())
            .await
            .unwrap();
    }
    let twice = event(100).to_string();
    for _ in 0..2 {
        backends
            .azurite
            .put_message("events-confirmation-poison", &twice)
            .await
            .unwrap();
    }
    backends
        .azurite
        .put_message("events-feedback-poison", &event(200).to_string())
        .await
        .unwrap();
    backends
        .azurite
        .put_message(
            "webjobs-blobtrigger-poison",
            r#"{"Type":"BlobTrigger","FunctionId":"Host.Functions.EventsSubscriber","BlobName":"x.json"}"#,
        )
        .await
        .unwrap();

    let env = storage_only(&backends);
    let list = run_aos(&env, &["poison", "list"]).await;
    assert_eq!(list.code, 0, "{}\n{}", list.stdout, list.stderr);
    let out = &list.stdout;
    for line in [
        "events-inbound-poison: 40 message(s), the first 32 shown",
        "events-feedback-poison: 1 message(s)",
        "events-confirmation-poison: 2 message(s)",
        "webjobs-blobtrigger-poison: 1 message(s)",
        "44 poisoned message(s)",
    ] {
        assert!(out.lines().any(|l| l == line), "`{line}` in:\n{out}");
    }
    assert_eq!(
        out.matches(&format!("event {}", event(100)["id"].as_str().unwrap()))
            .count(),
        1,
        "two copies of one event are shown once"
    );
    assert!(out.contains("(2 copies of this event)"), "{out}");
    assert!(out.contains("BlobTrigger"), "{out}");

    let json = run_aos(&env, &["poison", "list", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let parsed: Value = serde_json::from_str(&json.stdout).expect("--json prints JSON");
    assert_eq!(parsed["total"], 44);
    assert_eq!(parsed["queues"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_needs_a_selection_a_dry_run_changes_nothing_and_one_id_moves_one() {
    let backends = Backends::start().await;
    for n in 0..3 {
        backends
            .azurite
            .put_message("events-inbound-poison", &event(n).to_string())
            .await
            .unwrap();
    }
    let env = storage_only(&backends);
    let poisoned = || async {
        backends
            .azurite
            .queue_texts("events-inbound-poison")
            .await
            .unwrap()
    };
    let before = poisoned().await;

    let bare = run_aos(&env, &["poison", "replay"]).await;
    assert_eq!(
        bare.code, 2,
        "a replay without --id or --all: {}",
        bare.stderr
    );
    let bogus = run_aos(&env, &["poison", "replay", "--all", "--queue", "inbund"]).await;
    assert_eq!(bogus.code, 2, "{}", bogus.stderr);
    assert!(
        bogus.stderr.contains("inbound"),
        "the choices are named: {}",
        bogus.stderr
    );

    let dry = run_aos(&env, &["poison", "replay", "--all", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(
        dry.stdout.matches("would replay ").count(),
        3,
        "{}",
        dry.stdout
    );
    assert_eq!(poisoned().await, before, "a dry run moves nothing");
    assert!(
        backends
            .azurite
            .queue_texts("events-inbound")
            .await
            .unwrap()
            .is_empty()
    );

    let id = event(1)["id"].as_str().unwrap().to_string();
    let one = run_aos(
        &env,
        &["poison", "replay", "--queue", "inbound", "--id", &id],
    )
    .await;
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(one.stdout.contains("moved 1 message(s)"), "{}", one.stdout);
    assert!(
        one.stderr.contains(&format!("replayed {id}")),
        "progress: {}",
        one.stderr
    );
    let back = backends
        .azurite
        .queue_texts("events-inbound")
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert!(back[0].contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_storage_exits_3() {
    let backends = Backends::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Every `127.0.0.1:<port>` in the settings points at a port nothing listens on.
    let to_closed = |value: &str| {
        let mut out = String::new();
        let mut rest = value;
        while let Some(at) = rest.find("127.0.0.1:") {
            let (before, after) = rest.split_at(at + "127.0.0.1:".len());
            out.push_str(before);
            out.push_str(&closed.to_string());
            rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out.push_str(rest);
        out
    };
    let env: Vec<(String, String)> = storage_only(&backends)
        .into_iter()
        .map(|(name, value)| (name, to_closed(&value)))
        .collect();
    let list = run_aos(&env, &["poison", "list"]).await;
    assert_eq!(list.code, 3, "{}\n{}", list.stdout, list.stderr);
    assert!(list.stderr.starts_with("aos poison: "), "{}", list.stderr);
}

//! The container image's entrypoint: `aos run` as the Dockerfile starts it answers `GET
//! /health` against Azurite.
//!
//! No container engine runs here, so the test runs the binary the way the image would: the
//! final stage of the repository's `Dockerfile` is parsed (ENV, ENTRYPOINT, CMD, EXPOSE, the
//! COPY of the binary and the cargo build that made it), so the test cannot drift from the
//! file. The one substitution: the port in CMD's `--listen 0.0.0.0:<EXPOSE>` is replaced by a
//! free one (tests run in parallel on one network namespace); the host part stays `0.0.0.0`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_testkit::world::Backends;
use aos_testkit::{GroupChild, free_port, poll_until};
use serde_json::Value;

/// What the final stage of the Dockerfile says about how the container runs.
#[derive(Debug)]
struct Image {
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    expose: u16,
    user: String,
    /// `COPY --from=<stage> <source> <destination>` of the final stage.
    copies: Vec<(String, String, String)>,
    /// Every `RUN` of the build stages.
    build_runs: Vec<String>,
}

fn parse_dockerfile(text: &str) -> Image {
    // Join continuation lines, drop comments and blanks.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            instructions.push(std::mem::take(&mut current));
        }
    }
    let last_from = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a FROM");
    let (build, runtime) = instructions.split_at(last_from);
    let json_array = |value: &str| -> Vec<String> {
        serde_json::from_str(value)
            .unwrap_or_else(|e| panic!("exec form (a JSON array) expected, got {value}: {e}"))
    };
    let mut image = Image {
        env: BTreeMap::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        expose: 0,
        user: String::new(),
        copies: Vec::new(),
        build_runs: build
            .iter()
            .filter_map(|i| i.strip_prefix("RUN ").map(str::to_string))
            .collect(),
    };
    for instruction in runtime {
        let (keyword, rest) = instruction.split_once(' ').unwrap_or((instruction, ""));
        match keyword {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV key=value expected: {instruction}"));
                    image
                        .env
                        .insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
            "ENTRYPOINT" => image.entrypoint = json_array(rest),
            "CMD" => image.cmd = json_array(rest),
            "EXPOSE" => image.expose = rest.trim().parse().expect("EXPOSE <port>"),
            "USER" => image.user = rest.trim().to_string(),
            "COPY" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                if let [from, source, destination] = parts.as_slice()
                    && let Some(stage) = from.strip_prefix("--from=")
                {
                    image.copies.push((
                        stage.to_string(),
                        source.to_string(),
                        destination.to_string(),
                    ));
                }
            }
            _ => {}
        }
    }
    image
}

#[test]
fn dockerfile_ships_the_release_binary_without_dev_and_runs_it_as_non_root() {
    let image = parse_dockerfile(
        &std::fs::read_to_string(aos_testkit::app_root().join("Dockerfile")).unwrap(),
    );
    assert_eq!(
        image.copies,
        vec![(
            "build".to_string(),
            "/src/target/release/aos".to_string(),
            "/aos".to_string()
        )],
        "the runtime stage holds the binary and nothing else"
    );
    let build = image
        .build_runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build in the build stage");
    for flag in [
        "--release",
        "--locked",
        "--no-default-features",
        "--bin aos",
    ] {
        assert!(build.contains(flag), "{flag} missing in: {build}");
    }
    assert!(!build.contains("--features"), "no extra features: {build}");
    let uid: u32 = image
        .user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("numeric USER expected: {}", image.user));
    assert_ne!(uid, 0, "the container does not run as root");
    assert_eq!(image.entrypoint, vec!["/aos".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn container_entrypoint_starts_aos_run_and_answers_health() {
    let image = parse_dockerfile(
        &std::fs::read_to_string(aos_testkit::app_root().join("Dockerfile")).unwrap(),
    );
    // ENTRYPOINT is the binary the runtime stage copied in: run the same build (no `dev`).
    let (_, _, destination) = image.copies.first().expect("COPY of the binary");
    assert_eq!(image.entrypoint.first(), Some(destination));
    let binary = aos_testkit::deployment_binary().unwrap();

    // CMD as written, with the listening port swapped for a free one.
    let port = free_port().unwrap();
    let mut args: Vec<String> = image.entrypoint[1..].to_vec();
    args.extend(image.cmd.iter().cloned());
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .expect("CMD sets --listen");
    assert_eq!(
        args[listen + 1],
        format!("0.0.0.0:{}", image.expose),
        "CMD listens on every interface at the EXPOSEd port"
    );
    args[listen + 1] = format!("0.0.0.0:{port}");
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");

    // The container's environment: the image's ENV, then what the platform sets (the
    // deployment's settings; a test-harness log format is not one of them).
    let backends = Backends::start().await;
    let mut command = Command::new(&binary);
    command
        .args(&args)
        .env_clear()
        .envs(&image.env)
        .envs(
            backends
                .settings_env()
                .into_iter()
                .filter(|(k, _)| k != "AOS_LOG_FORMAT"),
        )
        .env(
            "AltinnApplicationOwnerSystemSettings__WebhookSecret",
            "container-webhook-secret",
        )
        .current_dir(tempfile::tempdir().unwrap().keep())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = GroupChild::spawn(command).expect("the entrypoint starts");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    for stream in child.take_output() {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let answer = poll_until(
        "the container's aos run to answer /health",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let Ok(response) = http.get(&url).send().await else {
                    return Ok(None);
                };
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                Ok(Some((status, body)))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\noutput:\n{}", lines.lock().unwrap().join("\n")));
    assert_eq!(
        answer,
        (
            200,
            serde_json::json!({"status": "healthy", "checks": {"storage": "ok", "key": "ok"}})
        ),
        "output:\n{}",
        lines.lock().unwrap().join("\n")
    );

    // The image's ENV took effect: its log lines are JSON objects.
    let output = lines.lock().unwrap().clone();
    assert!(!output.is_empty(), "aos run logs its start");
    for line in &output {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a JSON log line (AOS_LOG_FORMAT=json): {line}: {e}"));
        assert!(parsed.is_object(), "{line}");
    }
    child.kill().ok();
}

//! The simulator's Storage instance query (`GET storage/api/v1/instances`, spec §3.6) over real
//! HTTP: bearer auth, the filters a reconciler uses, and `next` paging until it is absent.

use std::collections::HashSet;

use altinn_sim::{InstanceSpec, SimulatorConfig, SimulatorHandle, start};
use serde_json::Value;

const TOKEN: &str = "query-test-token";

async fn sim() -> SimulatorHandle {
    start(SimulatorConfig {
        token: TOKEN.to_owned(),
        ..SimulatorConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn spec(org: &str, app: &str, party_id: u64, process_ended: bool) -> InstanceSpec {
    InstanceSpec {
        org: org.into(),
        app: app.into(),
        party_id,
        elements: vec![],
        process_ended,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Follows `next` from `first` and returns every instance id and the page count.
async fn all_pages(sim: &SimulatorHandle, query: &str) -> (Vec<String>, usize) {
    let mut url = format!("{}storage/api/v1/instances?{query}", sim.base_url());
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let (status, body) = get(&url, Some(TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        let instances = body["instances"].as_array().unwrap();
        assert_eq!(body["count"], instances.len());
        assert!(body["self"].is_string());
        ids.extend(
            instances
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        match body.get("next") {
            None => break,
            Some(next) => url = next.as_str().unwrap().to_string(),
        }
        assert!(pages < 100, "paging does not end");
    }
    (ids, pages)
}

#[tokio::test]
async fn the_query_needs_the_token_and_an_org_or_app() {
    let sim = sim().await;
    let base = format!("{}storage/api/v1/instances", sim.base_url());
    let (status, _) = get(&format!("{base}?org=ttd"), None).await;
    assert_eq!(status, 401);
    let (status, body) = get(&format!("{base}?process.isComplete=true"), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert_eq!(body, "Org or AppId must be defined.");
    let (status, body) = get(&format!("{base}?org=ttd"), Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 0);
    assert!(body.get("next").is_none());
}

#[tokio::test]
async fn paging_follows_next_and_returns_every_match_once() {
    let sim = sim().await;
    let mut expected = HashSet::new();
    for party in 1..=25 {
        expected.insert(
            sim.add_instance(spec("ttd", "a", party, true))
                .instance_id(),
        );
    }
    let (ids, pages) = all_pages(&sim, "appId=ttd/a&size=10").await;
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 25);
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
    // Default page size is 100: one page.
    let (ids, pages) = all_pages(&sim, "org=ttd").await;
    assert_eq!((ids.len(), pages), (25, 1));
}

#[tokio::test]
async fn filters_by_org_app_completion_confirmation_and_end_time() {
    let sim = sim().await;
    let done = sim.add_instance(spec("ttd", "a", 1, true));
    let confirmed = sim.add_instance(spec("ttd", "a", 2, true));
    let running = sim.add_instance(spec("ttd", "a", 3, false));
    let other_app = sim.add_instance(spec("ttd", "b", 4, true));
    let other_org = sim.add_instance(spec("skd", "a", 5, true));
    // Confirm through the API, as the archiver does.
    let url = format!(
        "{}storage/api/v1/instances/{}/complete",
        sim.base_url(),
        confirmed.instance_id()
    );
    let status = client()
        .post(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    let set = |ids: Vec<String>| ids.into_iter().collect::<HashSet<_>>();
    let ids = |insts: &[&altinn_sim::CreatedInstance]| {
        insts
            .iter()
            .map(|i| i.instance_id())
            .collect::<HashSet<_>>()
    };
    let (found, _) = all_pages(&sim, "org=ttd").await;
    assert_eq!(
        set(found),
        ids(&[&done, &confirmed, &running, &other_app]),
        "org filter"
    );
    let (found, _) = all_pages(&sim, "appId=ttd/a&process.isComplete=true").await;
    assert_eq!(set(found), ids(&[&done, &confirmed]));
    let (found, _) = all_pages(
        &sim,
        "appId=ttd/a&process.isComplete=true&excludeConfirmedBy=ttd",
    )
    .await;
    assert_eq!(set(found), ids(&[&done]));
    let (found, _) = all_pages(&sim, "org=ttd&confirmed=false&process.isComplete=true").await;
    assert_eq!(set(found), ids(&[&done, &other_app]));
    let (found, _) = all_pages(&sim, "org=skd").await;
    assert_eq!(set(found), ids(&[&other_org]));

    // process.ended windows: everything ended after 2000, nothing after 2100.
    let (found, _) = all_pages(&sim, "appId=ttd/a&process.ended=gt:2000-01-01T00:00:00Z").await;
    assert_eq!(set(found), ids(&[&done, &confirmed]));
    let (found, _) = all_pages(&sim, "appId=ttd/a&process.ended=gt:2100-01-01T00:00:00Z").await;
    assert!(found.is_empty());

    // The fault hook: the confirmed filter misses `done`, the time window still has it.
    sim.miss_in_confirmed_filter(done.instance_guid);
    let (found, _) = all_pages(
        &sim,
        "appId=ttd/a&process.isComplete=true&excludeConfirmedBy=ttd",
    )
    .await;
    assert!(found.is_empty());
    let (found, _) = all_pages(&sim, "appId=ttd/a&process.ended=gt:2000-01-01T00:00:00Z").await;
    assert!(found.contains(&done.instance_id()));
}

#[tokio::test]
async fn an_instance_confirmed_between_pages_does_not_hide_later_ones() {
    let sim = sim().await;
    let created: Vec<_> = (1..=6)
        .map(|p| sim.add_instance(spec("ttd", "a", p, true)))
        .collect();
    let base = format!(
        "{}storage/api/v1/instances?appId=ttd/a&excludeConfirmedBy=ttd&size=3",
        sim.base_url()
    );
    let (_, first) = get(&base, Some(TOKEN)).await;
    let first_ids: Vec<String> = first["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    // Confirm the first page (as a reconciler working page by page would), then go on.
    for id in &first_ids {
        let url = format!("{}storage/api/v1/instances/{id}/complete", sim.base_url());
        client().post(url).bearer_auth(TOKEN).send().await.unwrap();
    }
    let (_, second) = get(first["next"].as_str().unwrap(), Some(TOKEN)).await;
    let mut all = first_ids;
    all.extend(
        second["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string()),
    );
    assert_eq!(all.len(), 6, "{second}");
    assert_eq!(
        all.into_iter().collect::<HashSet<_>>(),
        created.iter().map(|c| c.instance_id()).collect()
    );
}

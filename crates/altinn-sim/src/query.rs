//! Storage's instance query, `GET storage/api/v1/instances?…` (spec §3.6): the endpoint a
//! reconciler uses to find completed instances whose events never arrived.
//!
//! Supported parameters: `appId`, `org` (one of them required, else 400 "Org or AppId must be
//! defined."; `org` is derived from `appId`), `process.isComplete`, `excludeConfirmedBy`,
//! `confirmed`, `process.ended` (repeatable, with `gt:`/`gte:`/`lt:`/`lte:`/`eq:`), `size`
//! (default 100) and `continuationToken`. Unknown parameters are ignored, as Storage ignores
//! those it does not bind.
//!
//! Paging is keyset-based on `(created, instanceGuid)`, ascending: the continuation token names
//! the last instance served, so an instance confirmed (and therefore filtered out) between two
//! pages never shifts later instances out of reach, as an offset would. Storage's real order
//! (`desc:lastChanged`) would move an instance when it is confirmed; clients must not depend on
//! the order, only on following `next` until it is absent.
//!
//! Fault hook: [`QueryState::miss`] makes the confirmed filter drop an instance although it is
//! not confirmed — the production bug reported in Altinn/altinn-studio#5482 — so tests can show
//! that a time-window sweep still finds it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::model::instance_json;
use super::state::{SimState, StoredInstance, lock};

/// Storage's default page size.
pub(crate) const DEFAULT_SIZE: usize = 100;
/// Largest page served; larger requests are clamped.
pub(crate) const MAX_SIZE: usize = 1000;

/// Query-related simulator state: the instances the confirmed filter wrongly drops.
#[derive(Default)]
pub(crate) struct QueryState {
    missed: Mutex<HashSet<Uuid>>,
}

impl QueryState {
    /// From now on, queries with `excludeConfirmedBy`/`confirmed=false` leave `guid` out.
    pub(crate) fn miss(&self, guid: Uuid) {
        lock(&self.missed).insert(guid);
    }

    fn is_missed(&self, guid: Uuid) -> bool {
        lock(&self.missed).contains(&guid)
    }
}

/// A comparison on a date field, e.g. `process.ended=gt:2024-01-01T00:00:00Z`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Comparison {
    Gt(OffsetDateTime),
    Gte(OffsetDateTime),
    Lt(OffsetDateTime),
    Lte(OffsetDateTime),
    Eq(OffsetDateTime),
}

impl Comparison {
    /// `op:date`; a bare date means `eq:` as in Storage.
    fn parse(value: &str) -> Option<Self> {
        let (op, date) = value.split_once(':').filter(|(op, _)| {
            matches!(
                op.to_ascii_lowercase().as_str(),
                "gt" | "gte" | "lt" | "lte" | "eq"
            )
        })?;
        let at = OffsetDateTime::parse(date, &Rfc3339).ok()?;
        Some(match op.to_ascii_lowercase().as_str() {
            "gt" => Comparison::Gt(at),
            "gte" => Comparison::Gte(at),
            "lt" => Comparison::Lt(at),
            "lte" => Comparison::Lte(at),
            _ => Comparison::Eq(at),
        })
    }

    fn holds(self, value: OffsetDateTime) -> bool {
        match self {
            Comparison::Gt(at) => value > at,
            Comparison::Gte(at) => value >= at,
            Comparison::Lt(at) => value < at,
            Comparison::Lte(at) => value <= at,
            Comparison::Eq(at) => value == at,
        }
    }
}

/// The parsed query.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct InstanceQuery {
    org: String,
    app_id: Option<String>,
    is_complete: Option<bool>,
    exclude_confirmed_by: Option<String>,
    ended: Vec<Comparison>,
    size: usize,
    after: Option<(i128, Uuid)>,
    /// Every parameter except `continuationToken`, to build `next`.
    params: Vec<(String, String)>,
}

impl InstanceQuery {
    /// Parses the raw query string; `Err` is the 400 message.
    pub(crate) fn parse(raw: &str) -> Result<Self, &'static str> {
        let mut query = InstanceQuery {
            size: DEFAULT_SIZE,
            ..Default::default()
        };
        let mut org = None;
        let mut confirmed = None;
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let (name, value) = (name.into_owned(), value.into_owned());
            match name.as_str() {
                "appId" => query.app_id = Some(value.clone()),
                "org" => org = Some(value.clone()),
                "process.isComplete" => {
                    query.is_complete = Some(parse_bool(&value).ok_or("invalid isComplete")?)
                }
                "excludeConfirmedBy" => query.exclude_confirmed_by = Some(value.clone()),
                "confirmed" => confirmed = Some(parse_bool(&value).ok_or("invalid confirmed")?),
                "process.ended" => query
                    .ended
                    .push(Comparison::parse(&value).ok_or("invalid process.ended")?),
                "size" => {
                    let size: usize = value.parse().map_err(|_| "invalid size")?;
                    query.size = size.clamp(1, MAX_SIZE);
                }
                "continuationToken" => {
                    query.after = Some(decode_token(&value).ok_or("invalid continuationToken")?);
                    continue;
                }
                _ => {}
            }
            query.params.push((name, value));
        }
        let derived = query
            .app_id
            .as_deref()
            .and_then(|id| id.split_once('/'))
            .map(|(org, _)| org.to_string());
        query.org = org
            .or(derived)
            .filter(|o| !o.is_empty())
            .ok_or("Org or AppId must be defined.")?;
        // `confirmed=false` is shorthand for "not confirmed by the calling org" (the org queried).
        if confirmed == Some(false) && query.exclude_confirmed_by.is_none() {
            query.exclude_confirmed_by = Some(query.org.clone());
        }
        Ok(query)
    }

    fn matches(&self, inst: &StoredInstance, queries: &QueryState) -> bool {
        let created = &inst.created;
        if created.org != self.org {
            return false;
        }
        if let Some(app_id) = &self.app_id
            && format!("{}/{}", created.org, created.app) != *app_id
        {
            return false;
        }
        if let Some(complete) = self.is_complete
            && inst.process_ended != complete
        {
            return false;
        }
        if let Some(org) = &self.exclude_confirmed_by
            && (inst
                .complete_confirmations
                .iter()
                .any(|(who, _)| who == org)
                || queries.is_missed(created.instance_guid))
        {
            return false;
        }
        if !self.ended.is_empty() {
            // The simulator's process ends when the instance is created (see `model`).
            if !inst.process_ended {
                return false;
            }
            if !self.ended.iter().all(|c| c.holds(inst.ended_at)) {
                return false;
            }
        }
        true
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn sort_key(inst: &StoredInstance) -> (i128, Uuid) {
    (
        inst.created_at.unix_timestamp_nanos(),
        inst.created.instance_guid,
    )
}

fn encode_token(key: (i128, Uuid)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}_{}", key.0, key.1))
}

fn decode_token(token: &str) -> Option<(i128, Uuid)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (nanos, guid) = text.split_once('_')?;
    Some((nanos.parse().ok()?, Uuid::try_parse(guid).ok()?))
}

/// One page of results: the instances and, unless it is the last page, the token of the next.
pub(crate) fn page(
    query: &InstanceQuery,
    instances: Vec<StoredInstance>,
    queries: &QueryState,
) -> (Vec<StoredInstance>, Option<String>) {
    let mut hits: Vec<StoredInstance> = instances
        .into_iter()
        .filter(|i| query.matches(i, queries))
        .filter(|i| query.after.is_none_or(|after| sort_key(i) > after))
        .collect();
    hits.sort_by_key(sort_key);
    let more = hits.len() > query.size;
    hits.truncate(query.size);
    let next = more.then(|| hits.last().map(|i| encode_token(sort_key(i))));
    (hits, next.flatten())
}

/// `GET storage/api/v1/instances`.
pub(crate) async fn query_instances(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let query = match InstanceQuery::parse(&raw) {
        Ok(query) => query,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let (hits, next_token) = page(&query, state.all_instances(), &state.query);
    let endpoint = format!("{}storage/api/v1/instances", state.base);
    let self_link = format!("{endpoint}?{raw}");
    let next = next_token.map(|token| {
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &query.params {
            params.append_pair(name, value);
        }
        params.append_pair("continuationToken", &token);
        format!("{endpoint}?{}", params.finish())
    });
    let instances: Vec<_> = hits.iter().map(|i| instance_json(&state.base, i)).collect();
    let mut body = json!({
        "count": instances.len(),
        "self": self_link,
        "instances": instances,
    });
    if let Some(next) = next {
        body["next"] = json!(next);
    }
    Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parameters_and_derives_org_from_app_id() {
        let q = InstanceQuery::parse(
            "appId=ttd%2Fapp&process.isComplete=true&excludeConfirmedBy=ttd&size=5&process.ended=gt:2024-01-01T00:00:00Z&foo=bar",
        )
        .unwrap();
        assert_eq!(q.org, "ttd");
        assert_eq!(q.app_id.as_deref(), Some("ttd/app"));
        assert_eq!(q.is_complete, Some(true));
        assert_eq!(q.exclude_confirmed_by.as_deref(), Some("ttd"));
        assert_eq!(q.size, 5);
        assert_eq!(q.ended.len(), 1);
        assert_eq!(
            InstanceQuery::parse("process.isComplete=true"),
            Err("Org or AppId must be defined.")
        );
        assert!(InstanceQuery::parse("org=ttd&process.ended=yesterday").is_err());
        assert!(InstanceQuery::parse("org=ttd&continuationToken=nonsense!").is_err());
        let confirmed = InstanceQuery::parse("org=ttd&confirmed=false").unwrap();
        assert_eq!(confirmed.exclude_confirmed_by.as_deref(), Some("ttd"));
        assert_eq!(InstanceQuery::parse("org=ttd&size=0").unwrap().size, 1);
    }

    #[test]
    fn tokens_round_trip() {
        let key = (1_700_000_000_123_456_700i128, Uuid::new_v4());
        assert_eq!(decode_token(&encode_token(key)), Some(key));
    }
}

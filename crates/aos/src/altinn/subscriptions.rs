//! The Altinn Events subscription API (spec §2.6): `{platform}events/api/v1/subscriptions`.
//!
//! Calls go through the client's `send` path (bearer token, one refresh on 401, in-place
//! retries), so the token only ever goes to the configured platform host.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{AltinnClient, AltinnError};
use crate::domain::{AppName, BaseUrl, OrgName};

/// The event type an archive subscribes to by default.
pub const DEFAULT_TYPE_FILTER: &str = "app.instance.process.completed";

/// A subscription as Altinn returns it: the fields this system reads, plus the raw JSON.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: u64,
    pub end_point: Option<String>,
    pub source_filter: Option<String>,
    pub type_filter: Option<String>,
    pub validated: bool,
    pub raw: Value,
}

impl Subscription {
    pub fn from_json(raw: Value) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields {
            id: u64,
            #[serde(alias = "endpoint")]
            end_point: Option<String>,
            source_filter: Option<String>,
            type_filter: Option<String>,
            #[serde(default)]
            validated: bool,
        }
        let f: Fields = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        Ok(Subscription {
            id: f.id,
            end_point: f.end_point,
            source_filter: f.source_filter,
            type_filter: f.type_filter,
            validated: f.validated,
            raw,
        })
    }
}

/// `{AppsBaseUrl}{org}/{app}` with no trailing slash: the only form Altinn delivers app events
/// for (a trailing slash is accepted nowhere and silently matched nothing in production).
/// [`BaseUrl`] always ends with exactly one `/`, so a configured base with or without a slash
/// gives the same filter.
pub fn app_source_filter(apps: &BaseUrl, org: &OrgName, app: &AppName) -> String {
    apps.join(&format!("{}/{}", org.as_str(), app.as_str()))
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

/// `org/app`, both names checked like an event's.
pub fn parse_app(value: &str) -> Result<(OrgName, AppName), String> {
    let (org, app) = value
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("`{value}` is not `org/app`"))?;
    let org = OrgName::parse(org).map_err(|e| format!("`{value}`: org {e}"))?;
    let app = AppName::parse(app).map_err(|e| format!("`{value}`: app {e}"))?;
    Ok((org, app))
}

/// The endpoint with its query (which usually carries the function key) replaced by `?…`, for
/// output and logs.
pub fn redact_endpoint(endpoint: &str) -> String {
    match endpoint.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => endpoint.to_string(),
    }
}

/// An endpoint Altinn accepts: an absolute https URL (http only on a loopback host, for local
/// runs). Returns it trimmed; the error never contains the query (the function key).
pub fn check_endpoint(endpoint: &str) -> Result<String, String> {
    let endpoint = endpoint.trim();
    let url = url::Url::parse(endpoint).map_err(|e| {
        format!(
            "endpoint `{}` is not a URL ({e})",
            redact_endpoint(endpoint)
        )
    })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(endpoint.to_string()),
        "http" if loopback => Ok(endpoint.to_string()),
        _ => Err(format!(
            "endpoint `{}` must be an absolute https URL (Altinn rejects anything else)",
            redact_endpoint(endpoint)
        )),
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl AltinnClient {
    fn subscriptions_url(&self, id: Option<u64>) -> url::Url {
        match id {
            Some(id) => self
                .platform()
                .join(&format!("events/api/v1/subscriptions/{id}")),
            None => self.platform().join("events/api/v1/subscriptions"),
        }
    }

    async fn subscription_json(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<Value, AltinnError> {
        let raw = super::client::body_bytes(response, what).await?;
        serde_json::from_slice(&raw).map_err(|e| AltinnError::Decode {
            what: what.to_string(),
            detail: e.to_string(),
        })
    }

    /// `POST /subscriptions`: idempotent in Altinn (an identical subscription returns the
    /// existing one) and every POST triggers a new validation push to `endpoint`.
    pub async fn create_subscription(
        &self,
        endpoint: &str,
        source_filter: &str,
        type_filter: Option<&str>,
    ) -> Result<Subscription, AltinnError> {
        let mut body = json!({"endPoint": endpoint, "sourceFilter": source_filter});
        if let Some(t) = type_filter {
            body["typeFilter"] = t.into();
        }
        self.post_subscription(&body, source_filter).await
    }

    /// `POST /subscriptions` with a request body built and checked by the caller (camelCase
    /// `SubscriptionRequestModel` fields); `source_filter` names it in errors.
    pub async fn post_subscription(
        &self,
        body: &Value,
        source_filter: &str,
    ) -> Result<Subscription, AltinnError> {
        let what = format!("create subscription for {source_filter}");
        let response = self
            .send_json(
                Method::POST,
                self.subscriptions_url(None),
                &what,
                TIMEOUT,
                Some(body),
            )
            .await?;
        let raw = self.subscription_json(response, &what).await?;
        Subscription::from_json(raw).map_err(|detail| AltinnError::Decode { what, detail })
    }

    /// `GET /subscriptions`: every subscription of the calling identity, validated or not.
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, AltinnError> {
        let what = "list subscriptions".to_string();
        let response = self
            .send_json(
                Method::GET,
                self.subscriptions_url(None),
                &what,
                TIMEOUT,
                None,
            )
            .await?;
        let raw = self.subscription_json(response, &what).await?;
        let list = raw
            .get("subscriptions")
            .and_then(Value::as_array)
            .ok_or_else(|| AltinnError::Decode {
                what: what.clone(),
                detail: "no `subscriptions` array".into(),
            })?;
        list.iter()
            .map(|s| {
                Subscription::from_json(s.clone()).map_err(|detail| AltinnError::Decode {
                    what: what.clone(),
                    detail,
                })
            })
            .collect()
    }

    /// `GET /subscriptions/{id}` (404 when unknown).
    pub async fn get_subscription(&self, id: u64) -> Result<Subscription, AltinnError> {
        let what = format!("read subscription {id}");
        let response = self
            .send_json(
                Method::GET,
                self.subscriptions_url(Some(id)),
                &what,
                TIMEOUT,
                None,
            )
            .await?;
        let raw = self.subscription_json(response, &what).await?;
        Subscription::from_json(raw).map_err(|detail| AltinnError::Decode { what, detail })
    }

    /// `DELETE /subscriptions/{id}`. Altinn may keep delivering for up to an hour (its cache).
    pub async fn delete_subscription(&self, id: u64) -> Result<(), AltinnError> {
        let what = format!("delete subscription {id}");
        self.send_json(
            Method::DELETE,
            self.subscriptions_url(Some(id)),
            &what,
            TIMEOUT,
            None,
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_filter_has_no_trailing_slash_whatever_the_base() {
        let org = OrgName::parse("ttd").unwrap();
        let app = AppName::parse("my-app").unwrap();
        for base in [
            "https://ttd.apps.tt02.altinn.no",
            "https://ttd.apps.tt02.altinn.no/",
            "https://ttd.apps.tt02.altinn.no//",
        ] {
            let base = BaseUrl::parse(base).unwrap();
            assert_eq!(
                app_source_filter(&base, &org, &app),
                "https://ttd.apps.tt02.altinn.no/ttd/my-app"
            );
        }
    }

    #[test]
    fn apps_are_validated() {
        assert!(parse_app("ttd/my-app").is_ok());
        for bad in ["ttd", "ttd/", "/app", "ttd/app/x", "ttd/../x", "t d/app"] {
            assert!(parse_app(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subscriptions_parse_leniently_and_redact() {
        let s = Subscription::from_json(
            json!({"id": 3, "endPoint": "https://h/x?code=s", "validated": true, "extra": 1}),
        )
        .unwrap();
        assert_eq!(s.id, 3);
        assert!(s.validated);
        assert_eq!(
            redact_endpoint(s.end_point.as_deref().unwrap()),
            "https://h/x?…"
        );
        assert!(Subscription::from_json(json!({"endPoint": "x"})).is_err());
    }
}

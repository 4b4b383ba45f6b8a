//! The Events pull API for a service owner (`docs/specs/altinn.md` §2.7 A):
//! `GET {platform}events/api/v1/app/{org}/{app}?after={id}|from={time}&size=…&type=…`.
//!
//! The URL is always built from the configured platform base. Of the `next` response header only
//! its `after` value (the cursor) is used, so the token never follows a link from a response —
//! as with the Storage query's `next`.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AltinnClient, AltinnError, body_bytes};
use crate::domain::{AppName, OrgName};

/// Where a pull starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullStart {
    /// Strictly after the event with this id (the cursor).
    After(String),
    /// Events whose `time` is at or after this (the first run, without a cursor).
    From(OffsetDateTime),
}

/// One page of the pull API.
#[derive(Clone, Debug, Default)]
pub struct EventPage {
    /// The events as raw JSON, so one malformed event is reported by the caller instead of
    /// failing the page.
    pub events: Vec<Value>,
    /// The `after` value of the `next` header, when there is one.
    pub next_after: Option<String>,
}

impl EventPage {
    /// The body is a JSON array (served as `application/cloudevents+json` or
    /// `application/json`; the content type is not relied on).
    pub fn parse(raw: &[u8], next: Option<&str>) -> Result<Self, String> {
        let body: Value = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        let Value::Array(events) = body else {
            return Err("the body is not a JSON array of events".into());
        };
        let next_after = match next.map(str::trim).filter(|n| !n.is_empty()) {
            None => None,
            Some(next) => {
                // A relative link is read against a dummy base: only its query matters.
                let url = url::Url::parse(next)
                    .or_else(|_| url::Url::parse("http://next.invalid/")?.join(next))
                    .map_err(|e| format!("`next` is not a URL ({e}): {next}"))?;
                Some(
                    url.query_pairs()
                        .find(|(name, _)| name.eq_ignore_ascii_case("after"))
                        .map(|(_, value)| value.into_owned())
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| format!("`next` has no `after`: {next}"))?,
                )
            }
        };
        Ok(EventPage { events, next_after })
    }
}

impl AltinnClient {
    /// One page of `{org}/{app}`'s events from `start`, at most `size`, of the given `types`
    /// (all types when empty).
    pub async fn pull_app_events(
        &self,
        org: &OrgName,
        app: &AppName,
        start: &PullStart,
        types: &[String],
        size: usize,
    ) -> Result<EventPage, AltinnError> {
        let what = format!("pull events of {}/{}", org.as_str(), app.as_str());
        let mut url = self.platform.join(&format!(
            "events/api/v1/app/{}/{}",
            org.as_str(),
            app.as_str()
        ));
        {
            let mut query = url.query_pairs_mut();
            match start {
                PullStart::After(id) => query.append_pair("after", id),
                PullStart::From(at) => query.append_pair(
                    "from",
                    &at.to_offset(time::UtcOffset::UTC)
                        .format(&Rfc3339)
                        .unwrap_or_default(),
                ),
            };
            for kind in types {
                query.append_pair("type", kind);
            }
            query.append_pair("size", &size.to_string());
        }
        let response = self
            .send(Method::GET, url, &what, Duration::from_secs(60))
            .await?;
        let next = response
            .headers()
            .get("next")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let raw = body_bytes(response, &what).await?;
        EventPage::parse(&raw, next.as_deref())
            .map_err(|detail| AltinnError::Decode { what, detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_yield_only_the_cursor_of_their_next_link() {
        let page = EventPage::parse(
            br#"[{"id":"a"},{"id":"b"}]"#,
            Some("https://elsewhere.example/events/api/v1/app/ttd/x?size=2&after=b%2Bc"),
        )
        .unwrap();
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.next_after.as_deref(), Some("b+c"));
        let relative = EventPage::parse(b"[]", Some("/events/api/v1/app/ttd/x?after=z")).unwrap();
        assert_eq!(relative.next_after.as_deref(), Some("z"));
        assert!(EventPage::parse(b"[]", None).unwrap().next_after.is_none());
        assert!(EventPage::parse(b"[]", Some("https://x/?size=1")).is_err());
        assert!(EventPage::parse(br#"{"events":[]}"#, None).is_err());
        assert!(EventPage::parse(b"not json", None).is_err());
    }
}

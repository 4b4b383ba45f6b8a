//! One Altinn Events subscription: binding and validating a
//! `POST /events/api/v1/subscriptions` body the way Altinn does (spec §2.6),
//! the stored form and its JSON, and the rule deciding which events it gets.
//!
//! Only **app** subscriptions exist here (the only kind an AOS creates). The
//! simulator's apps base is its own base URL, so an app's source filter is
//! `{base}{org}/{app}`. The simulator's token carries no org claim, so the
//! subscriber identity (`consumer`, `createdBy`) is taken to be the app's
//! owner, `/org/{org}`: a service owner subscribing to its own app.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use url::{Host, Url};
use uuid::Uuid;

use super::control::valid_segment;
use super::model::rfc3339;

const APP_RESOURCE_PREFIX: &str = "urn:altinn:resource:app_";

/// A rejected request in ASP.NET's validation-problem shape (fixture
/// `subscription-response-400-problem.json`): clients that log Altinn's
/// errors see the same structure here.
#[derive(Clone, Debug)]
pub(crate) struct Problem {
    pub status: u16,
    /// `(field or JSON path, message)`, in the order found.
    pub errors: Vec<(String, String)>,
}

impl Problem {
    pub(crate) fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            errors: vec![(field.to_owned(), message.into())],
        }
    }

    /// A problem without field errors (e.g. 404, 415).
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            errors: Vec::new(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let (section, title) = match self.status {
            400 => ("6.5.1", "One or more validation errors occurred."),
            404 => ("6.5.4", "Not Found"),
            415 => ("6.5.13", "Unsupported Media Type"),
            _ => ("6.6.1", "An error occurred while processing your request."),
        };
        let mut problem = Map::new();
        problem.insert(
            "type".into(),
            format!("https://tools.ietf.org/html/rfc7231#section-{section}").into(),
        );
        problem.insert("title".into(), title.into());
        problem.insert("status".into(), self.status.into());
        problem.insert("traceId".into(), trace_id().into());
        if !self.errors.is_empty() {
            let mut errors = Map::new();
            for (field, message) in &self.errors {
                if let Value::Array(list) = errors
                    .entry(field.clone())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    list.push(message.clone().into());
                }
            }
            problem.insert("errors".into(), Value::Object(errors));
        }
        Value::Object(problem)
    }

    /// One line for `anyhow` errors of the handle API.
    pub(crate) fn summary(&self) -> String {
        let details: Vec<String> = self
            .errors
            .iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        format!("status {}: {}", self.status, details.join("; "))
    }
}

/// A W3C traceparent-like id, as ASP.NET puts in its problem details.
pub(crate) fn trace_id() -> String {
    let span = Uuid::new_v4().simple().to_string();
    format!("00-{}-{}-00", Uuid::new_v4().simple(), &span[..16])
}

/// The request fields after binding. Binding is case-insensitive and ignores
/// unknown keys, like System.Text.Json in Altinn (so `endpoint` and
/// `endPoint` both work).
#[derive(Default)]
struct RequestModel {
    end_point: Option<String>,
    source_filter: Option<String>,
    resource_filter: Option<String>,
    subject_filter: Option<String>,
    alternative_subject_filter: Option<String>,
    type_filter: Option<String>,
    include_subunits: bool,
}

fn bind(body: &Value) -> Result<RequestModel, Problem> {
    let Value::Object(map) = body else {
        return Err(Problem::bad_request(
            "$",
            "The JSON value could not be converted to SubscriptionRequestModel.",
        ));
    };
    let mut req = RequestModel::default();
    for (key, value) in map {
        let slot = match key.to_ascii_lowercase().as_str() {
            "endpoint" => &mut req.end_point,
            "sourcefilter" => &mut req.source_filter,
            "resourcefilter" => &mut req.resource_filter,
            "subjectfilter" => &mut req.subject_filter,
            "alternativesubjectfilter" => &mut req.alternative_subject_filter,
            "typefilter" => &mut req.type_filter,
            "includesubunits" => {
                req.include_subunits = match value {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    _ => {
                        return Err(Problem::bad_request(
                            &format!("$.{key}"),
                            "must be a boolean",
                        ));
                    }
                };
                continue;
            }
            _ => continue,
        };
        *slot = match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => {
                return Err(Problem::bad_request(
                    &format!("$.{key}"),
                    "must be a string",
                ));
            }
        };
    }
    Ok(req)
}

/// Everything that identifies a subscription: two POSTs with equal specs are
/// the same subscription (Altinn's `FindSubscription` compares exactly these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubscriptionSpec {
    /// As registered, unnormalised: pushes go to exactly this URL.
    pub end_point: String,
    pub source_filter: Option<String>,
    pub resource_filter: String,
    pub subject_filter: Option<String>,
    pub type_filter: Option<String>,
    /// Stored and echoed; it has no effect on matching here (the simulator
    /// has no organisation register with subunits).
    pub include_subunits: bool,
    /// `/org/{org}`; also the `createdBy`.
    pub consumer: String,
}

/// Validates a subscription request like Altinn's app subscription service.
/// `base` is the simulator's base URL (with trailing slash), which is also
/// the apps base.
pub(crate) fn validate(base: &Url, body: &Value) -> Result<SubscriptionSpec, Problem> {
    let req = bind(body)?;

    let end_point = req
        .end_point
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| Problem::bad_request("endPoint", "Missing or invalid endpoint"))?;
    check_endpoint(&end_point)?;

    // Altinn converts an alternative subject (national id / org number) to a
    // `/party/` subject through its register; without a register the
    // simulator behaves like Altinn does when that lookup finds nothing.
    let has = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if has(&req.alternative_subject_filter) && !has(&req.subject_filter) {
        return Err(Problem::bad_request(
            "alternativeSubjectFilter",
            "A valid subject to the authenticated identity is required",
        ));
    }

    let (org, app) = match (&req.source_filter, &req.resource_filter) {
        (Some(source), _) => app_from_source(base, source)?,
        (None, Some(resource)) => app_from_resource(resource)?,
        (None, None) => return Err(Problem::bad_request("sourceFilter", "Source is required")),
    };
    let resource_filter = format!("{APP_RESOURCE_PREFIX}{org}_{app}");
    if let Some(given) = &req.resource_filter
        && *given != resource_filter
    {
        return Err(Problem::bad_request(
            "resourceFilter",
            format!(
                "Provided resource filter and source filter are not compatible \
                 (the source filter implies {resource_filter})"
            ),
        ));
    }

    Ok(SubscriptionSpec {
        end_point,
        source_filter: req.source_filter,
        resource_filter,
        subject_filter: req.subject_filter,
        type_filter: req.type_filter,
        include_subunits: req.include_subunits,
        consumer: format!("/org/{org}"),
    })
}

/// Altinn requires an absolute `https` endpoint. The simulator also accepts
/// `http` to a loopback host (`localhost`, 127.0.0.0/8, `::1`) because local
/// runs of the receiver have no TLS; any other `http` endpoint is rejected as
/// Altinn would reject it, so a config that only works locally shows up here.
fn check_endpoint(end_point: &str) -> Result<(), Problem> {
    let invalid = || {
        Problem::bad_request(
            "endPoint",
            "Missing or invalid endpoint: an absolute https URL is required \
             (the simulator also accepts http on a loopback host)",
        )
    };
    let url = Url::parse(end_point).map_err(|_| invalid())?;
    let ok = match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(host)) => is_loopback(&host),
        _ => false,
    };
    if ok { Ok(()) } else { Err(invalid()) }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// `{base}{org}/{app}` exactly: no trailing slash, no instance part, no
/// query. A trailing slash is the classic mistake (it silently broke
/// delivery in Altinn, issue altinn-studio#6182), so it is a 400 here too.
fn app_from_source(base: &Url, source: &str) -> Result<(String, String), Problem> {
    let url = Url::parse(source).map_err(|_| {
        Problem::bad_request("sourceFilter", "SourceFilter must be an absolute URI")
    })?;
    let wrong = || {
        Problem::bad_request(
            "sourceFilter",
            format!(
                "A valid app id is required in Source filter {base}{{org}}/{{app}} \
                 (no trailing slash, no instance path)"
            ),
        )
    };
    let rest = url.as_str().strip_prefix(base.as_str()).ok_or_else(wrong)?;
    match rest.split_once('/') {
        Some((org, app)) if valid_segment(org) && valid_segment(app) => {
            Ok((org.to_owned(), app.to_owned()))
        }
        _ => Err(wrong()),
    }
}

/// `urn:altinn:resource:app_{org}_{app}`; org codes contain no underscore,
/// so the first one separates org from app.
fn app_from_resource(resource: &str) -> Result<(String, String), Problem> {
    resource
        .strip_prefix(APP_RESOURCE_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .filter(|(org, app)| valid_segment(org) && valid_segment(app))
        .map(|(org, app)| (org.to_owned(), app.to_owned()))
        .ok_or_else(|| {
            Problem::bad_request(
                "resourceFilter",
                "The simulator supports app subscriptions only: \
                 resourceFilter must be urn:altinn:resource:app_{org}_{app}",
            )
        })
}

/// A stored subscription.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    pub id: u64,
    pub spec: SubscriptionSpec,
    pub created: OffsetDateTime,
    /// Set once a validation push was answered with 2xx; never cleared.
    pub validated: bool,
}

/// Altinn's `Subscription` model, camelCase, nulls omitted.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionJson<'a> {
    id: u64,
    end_point: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_filter: Option<&'a str>,
    resource_filter: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject_filter: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_filter: Option<&'a str>,
    consumer: &'a str,
    created_by: &'a str,
    created: String,
    validated: bool,
    include_subunits: bool,
}

impl Subscription {
    pub(crate) fn to_json(&self) -> Value {
        let s = &self.spec;
        let json = SubscriptionJson {
            id: self.id,
            end_point: &s.end_point,
            source_filter: s.source_filter.as_deref(),
            resource_filter: &s.resource_filter,
            subject_filter: s.subject_filter.as_deref(),
            type_filter: s.type_filter.as_deref(),
            consumer: &s.consumer,
            created_by: &s.consumer,
            created: rfc3339(self.created),
            validated: self.validated,
            include_subunits: s.include_subunits,
        };
        // Serialising a plain struct cannot fail; Null is a harmless fallback.
        serde_json::to_value(json).unwrap_or_default()
    }

    /// Altinn's matching (spec §2.6): only validated subscriptions; resource
    /// exact; source filter a URI base of the source; type and subject filter
    /// absent or exact. An empty-string filter matches nothing, as in Altinn.
    pub(crate) fn matches(&self, event: &EventKeys<'_>) -> bool {
        let s = &self.spec;
        self.validated
            && event.resource.as_deref() == Some(s.resource_filter.as_str())
            && s.source_filter
                .as_deref()
                .is_none_or(|filter| is_uri_base(filter, event.source))
            && exact_or_any(s.type_filter.as_deref(), Some(event.kind))
            && exact_or_any(s.subject_filter.as_deref(), event.subject)
    }
}

fn exact_or_any(filter: Option<&str>, value: Option<&str>) -> bool {
    match filter {
        None => true,
        Some("") => false,
        Some(f) => value == Some(f),
    }
}

/// Same origin, and the source path is the base path or lies below it at a
/// segment boundary (`/ttd/app` is a base of `/ttd/app/instances/…` but not
/// of `/ttd/app2/…`).
fn is_uri_base(base: &str, source: &str) -> bool {
    let (Ok(base), Ok(source)) = (Url::parse(base), Url::parse(source)) else {
        return false;
    };
    let base_path = base.path().trim_end_matches('/');
    base.origin() == source.origin()
        && source
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The event attributes matching looks at.
pub(crate) struct EventKeys<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub source: &'a str,
    pub subject: Option<&'a str>,
    /// `resource`, or when absent derived from an app-style source
    /// (`…/{org}/{app}/…`) as Altinn Events does when an app registers an
    /// event, so hand-made events without `resource` still match.
    pub resource: Option<Cow<'a, str>>,
}

impl<'a> EventKeys<'a> {
    /// `None` unless the event is an object with string `id`, `type` and
    /// `source` (the attributes Altinn requires).
    pub(crate) fn of(event: &'a Value) -> Option<Self> {
        let text = |key: &str| event.get(key).and_then(Value::as_str);
        let source = text("source")?;
        let resource = text("resource")
            .map(Cow::Borrowed)
            .or_else(|| resource_from_source(source).map(Cow::Owned));
        Some(Self {
            id: text("id")?,
            kind: text("type")?,
            source,
            subject: text("subject"),
            resource,
        })
    }
}

fn resource_from_source(source: &str) -> Option<String> {
    let url = Url::parse(source).ok()?;
    let mut segments = url.path_segments()?;
    let (org, app) = (segments.next()?, segments.next()?);
    (valid_segment(org) && valid_segment(app)).then(|| format!("{APP_RESOURCE_PREFIX}{org}_{app}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:5000/").expect("url")
    }

    fn spec(body: Value) -> Result<SubscriptionSpec, Problem> {
        validate(&base(), &body)
    }

    fn sub(body: Value) -> Subscription {
        Subscription {
            id: 1,
            spec: spec(body).expect("valid"),
            created: OffsetDateTime::UNIX_EPOCH,
            validated: true,
        }
    }

    const SOURCE: &str = "http://127.0.0.1:5000/ttd/app";

    fn event(kind: &str, source: &str) -> Value {
        json!({"id": "e1", "type": kind, "source": source, "subject": "/party/1"})
    }

    fn matches(s: &Subscription, ev: &Value) -> bool {
        s.matches(&EventKeys::of(ev).expect("keys"))
    }

    #[test]
    fn binds_case_insensitively_and_derives_resource() {
        let s = spec(json!({"ENDPOINT": "https://x.example/hook?code=1", "SourceFilter": SOURCE}))
            .expect("valid");
        assert_eq!(s.end_point, "https://x.example/hook?code=1");
        assert_eq!(s.resource_filter, "urn:altinn:resource:app_ttd_app");
        assert_eq!(s.consumer, "/org/ttd");
    }

    #[test]
    fn rejects_bad_requests_with_field_errors() {
        let field = |body: Value| spec(body).expect_err("invalid").errors[0].0.clone();
        assert_eq!(field(json!([])), "$");
        assert_eq!(field(json!({"sourceFilter": SOURCE})), "endPoint");
        assert_eq!(
            field(json!({"endPoint": 5, "sourceFilter": SOURCE})),
            "$.endPoint"
        );
        assert_eq!(
            field(json!({"endPoint": "/relative", "sourceFilter": SOURCE})),
            "endPoint"
        );
        assert_eq!(
            field(json!({"endPoint": "http://example.com/", "sourceFilter": SOURCE})),
            "endPoint"
        );
        for bad in [
            "http://127.0.0.1:5000/ttd/app/",
            "http://127.0.0.1:5000/ttd/app/instances/1/x",
            "http://127.0.0.1:5000/ttd",
            "http://127.0.0.1:5000/ttd/app?x=1",
            "http://127.0.0.1:5001/ttd/app",
            "not a url",
        ] {
            assert_eq!(
                field(json!({"endPoint": "https://h/", "sourceFilter": bad})),
                "sourceFilter",
                "{bad}"
            );
        }
        assert_eq!(
            field(
                json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "resourceFilter": "urn:altinn:resource:app_ttd_other"})
            ),
            "resourceFilter"
        );
        assert_eq!(
            field(
                json!({"endPoint": "https://h/", "resourceFilter": "urn:altinn:resource:generic"})
            ),
            "resourceFilter"
        );
        assert_eq!(field(json!({"endPoint": "https://h/"})), "sourceFilter");
        assert_eq!(
            field(
                json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "alternativeSubjectFilter": "/org/1"})
            ),
            "alternativeSubjectFilter"
        );
    }

    #[test]
    fn accepts_loopback_http_and_resource_only() {
        for ep in [
            "http://localhost:1/x",
            "http://127.0.0.2/",
            "http://[::1]:8/",
        ] {
            assert!(
                spec(json!({"endPoint": ep, "sourceFilter": SOURCE})).is_ok(),
                "{ep}"
            );
        }
        let s = spec(json!({"endPoint": "https://h/", "resourceFilter": "urn:altinn:resource:app_ttd_my_app"}))
            .expect("valid");
        assert_eq!(s.source_filter, None);
        assert_eq!(s.consumer, "/org/ttd");
    }

    #[test]
    fn matching_follows_altinn_rules() {
        let completed = event(
            "app.instance.process.completed",
            "http://127.0.0.1:5000/ttd/app/instances/1/g",
        );
        let any = sub(json!({"endPoint": "https://h/", "sourceFilter": SOURCE}));
        assert!(matches(&any, &completed));
        let typed = sub(
            json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "typeFilter": "app.instance.process.completed"}),
        );
        assert!(matches(&typed, &completed));
        let other_type = sub(
            json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "typeFilter": "app.instance.created"}),
        );
        assert!(!matches(&other_type, &completed));
        let empty_type =
            sub(json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "typeFilter": ""}));
        assert!(!matches(&empty_type, &completed));
        let empty_subject =
            sub(json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "subjectFilter": ""}));
        assert!(!matches(&empty_subject, &completed));
        let subject = sub(
            json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "subjectFilter": "/party/1"}),
        );
        assert!(matches(&subject, &completed));
        let other_subject = sub(
            json!({"endPoint": "https://h/", "sourceFilter": SOURCE, "subjectFilter": "/party/2"}),
        );
        assert!(!matches(&other_subject, &completed));

        // Segment boundary: app2 is not below app.
        let app2 = event(
            "app.instance.process.completed",
            "http://127.0.0.1:5000/ttd/app2/instances/1/g",
        );
        assert!(!matches(&any, &app2));
        // An explicit resource decides over the source-derived one.
        let mut foreign = completed.clone();
        foreign["resource"] = json!("urn:altinn:resource:app_ttd_other");
        assert!(!matches(&any, &foreign));

        let mut unvalidated = any.clone();
        unvalidated.validated = false;
        assert!(!matches(&unvalidated, &completed));
        assert!(EventKeys::of(&json!({"type": "x", "source": SOURCE})).is_none());
    }
}

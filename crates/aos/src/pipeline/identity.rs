//! Checking that an instance's metadata agrees with the instance we asked for.
//!
//! Altinn's metadata is not trusted as a source of URLs or paths. An instance whose `id`,
//! `appId`, self links or `blobStoragePath` name another instance or another host is an
//! anomaly: it is never archived as complete and never confirmed, and the error says what was
//! wrong. The result, [`CheckedElement`], is what the archive works from.

use uuid::Uuid;

use crate::altinn::model::{DataElement, Instance};
use crate::domain::{BaseUrl, InstanceRef, parse_guid};

/// The virus-scan state of an element, as it matters for archiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Clean, or not scanned (`NotApplicable`, absent).
    Clean,
    /// Not yet scanned: archive later, not now.
    Pending,
    /// Infected: archive apart, under `quarantine/`, and flag it in the manifest.
    Infected,
}

/// A data element whose identity and size have been checked.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedElement {
    pub id: Uuid,
    pub data_type: String,
    pub content_type: String,
    pub size: u64,
    /// The element's `lastChanged` and `contentHash` as Altinn wrote them (empty = absent).
    pub last_changed: Option<String>,
    pub content_hash: Option<String>,
    pub filename: Option<String>,
    pub scan: Scan,
    pub hard_deleted: bool,
}

/// Checks `instance` against `expected`; returns its elements or what was anomalous.
pub fn check_instance(
    expected: &InstanceRef,
    instance: &Instance,
    platform: &BaseUrl,
) -> Result<Vec<CheckedElement>, String> {
    match instance.id.as_deref() {
        Some(id) if id == expected.instance_id() => {}
        other => {
            return Err(format!(
                "instance id {other:?} is not {}",
                expected.instance_id()
            ));
        }
    }
    if let Some(app_id) = instance.app_id.as_deref()
        && app_id != expected.app_id()
    {
        return Err(format!("appId `{app_id}` is not {}", expected.app_id()));
    }
    if let Some(org) = instance.org.as_deref()
        && org != expected.org.as_str()
    {
        return Err(format!("org `{org}` is not {}", expected.org.as_str()));
    }
    let instance_path = format!("/instances/{}", expected.instance_id());
    if let Some(link) = instance
        .self_links
        .as_ref()
        .and_then(|l| l.platform.as_deref())
    {
        check_link(link, platform, &instance_path)?;
    }
    let elements: Vec<CheckedElement> = instance
        .data
        .iter()
        .map(|element| check_element(expected, element, platform, &instance_path))
        .collect::<Result<_, _>>()?;
    // Two elements with one id would share one blob: neither could ever be current.
    let mut ids = std::collections::HashSet::new();
    if let Some(twice) = elements.iter().find(|e| !ids.insert(e.id)) {
        return Err(format!("data element {} is listed twice", twice.id));
    }
    Ok(elements)
}

/// Longest `lastChanged`/`contentHash`/`contentType` accepted: they go into blob metadata and
/// headers (8 KiB of metadata per blob), and real values are a few dozen characters.
const MAX_VERSION_FIELD: usize = 256;

/// A value that goes into blob metadata or a header as it is, and is later compared with what
/// the service gives back: printable ASCII without surrounding whitespace (HTTP strips it, so a
/// padded value would never compare equal, and the element would be downloaded on every
/// attempt), at most [`MAX_VERSION_FIELD`] characters.
fn header_safe(id: Uuid, field: &str, value: &str) -> Result<(), String> {
    let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable || value.trim() != value || value.len() > MAX_VERSION_FIELD {
        return Err(format!(
            "data element {id} has a {field} that cannot be recorded ({:?})",
            value.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

fn check_element(
    expected: &InstanceRef,
    element: &DataElement,
    platform: &BaseUrl,
    instance_path: &str,
) -> Result<CheckedElement, String> {
    let raw_id = element.id.as_deref().unwrap_or("");
    let id = parse_guid(raw_id).map_err(|e| format!("data element id {e}"))?;
    if let Some(guid) = element.instance_guid.as_deref()
        && parse_guid(guid).ok() != Some(expected.instance_guid)
    {
        return Err(format!("data element {id} belongs to instance `{guid}`"));
    }
    if let Some(path) = element.blob_storage_path.as_deref() {
        let want = format!("{}/{}/data/{id}", expected.app_id(), expected.instance_guid);
        if path != want {
            return Err(format!(
                "data element {id} has blobStoragePath `{path}`, expected `{want}`"
            ));
        }
    }
    if let Some(link) = element
        .self_links
        .as_ref()
        .and_then(|l| l.platform.as_deref())
    {
        check_link(link, platform, &format!("{instance_path}/data/{id}"))?;
    }
    let size = match element.size {
        Some(size) if size >= 0 => size as u64,
        other => return Err(format!("data element {id} has no valid size ({other:?})")),
    };
    let last_changed = element.last_changed.clone().filter(|c| !c.is_empty());
    if let Some(changed) = &last_changed {
        header_safe(id, "lastChanged", changed)?;
        time::OffsetDateTime::parse(changed, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                format!("data element {id} has a lastChanged that is not a time ({changed:?})")
            })?;
    }
    // A `contentHash` or `contentType` that cannot be recorded is left out rather than
    // refused: the element is still archived, versioned by its size and `lastChanged`, stored
    // as `application/octet-stream`.
    let content_hash = element
        .content_hash
        .clone()
        .filter(|c| !c.is_empty() && header_safe(id, "contentHash", c).is_ok());
    let content_type = element
        .content_type
        .clone()
        .filter(|c| !c.is_empty() && header_safe(id, "contentType", c).is_ok())
        .unwrap_or_else(|| "application/octet-stream".into());
    let scan = match element.file_scan_result.as_deref() {
        Some("Pending") => Scan::Pending,
        Some("Infected") => Scan::Infected,
        _ => Scan::Clean,
    };
    Ok(CheckedElement {
        id,
        data_type: element.data_type.clone().unwrap_or_default(),
        content_type,
        size,
        last_changed,
        content_hash,
        filename: element.filename.clone().filter(|f| !f.is_empty()),
        scan,
        hard_deleted: element
            .delete_status
            .as_ref()
            .is_some_and(|d| d.is_hard_deleted),
    })
}

/// A self link must be on the configured platform host and end with the expected path.
fn check_link(link: &str, platform: &BaseUrl, path_suffix: &str) -> Result<(), String> {
    let url = url::Url::parse(link).map_err(|_| format!("self link `{link}` is not a URL"))?;
    if !platform.same_origin(&url) {
        return Err(format!(
            "self link `{link}` is not on the platform host {}",
            platform
        ));
    }
    if link.contains(['%', '\\', '?', '#'])
        || link.contains("/.")
        || !url.path().ends_with(path_suffix)
    {
        return Err(format!(
            "self link `{link}` does not point to {path_suffix}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GUID: &str = "bd9edd59-b18c-4726-aa9e-6b150eade814";
    const DATA: &str = "8a8a01ae-9533-4aa9-b914-8ab0fae6ea0d";

    fn platform() -> BaseUrl {
        BaseUrl::parse("https://platform.tt02.altinn.no/").unwrap()
    }

    fn expected() -> InstanceRef {
        let apps = BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap();
        InstanceRef::from_source(
            &format!("https://ttd.apps.tt02.altinn.no/ttd/app/instances/1337/{GUID}"),
            &apps,
        )
        .unwrap()
    }

    fn good() -> serde_json::Value {
        json!({
            "id": format!("1337/{GUID}"), "appId": "ttd/app", "org": "ttd",
            "selfLinks": {"platform": format!("https://platform.tt02.altinn.no/storage/api/v1/instances/1337/{GUID}")},
            "data": [{
                "id": DATA, "instanceGuid": GUID, "dataType": "default", "contentType": "application/xml",
                "blobStoragePath": format!("ttd/app/{GUID}/data/{DATA}"), "size": 401,
                "selfLinks": {"platform": format!("https://platform.tt02.altinn.no/storage/api/v1/instances/1337/{GUID}/data/{DATA}")},
                "fileScanResult": "NotApplicable"
            }]
        })
    }

    fn check(value: serde_json::Value) -> Result<Vec<CheckedElement>, String> {
        let instance: Instance = serde_json::from_value(value).unwrap();
        check_instance(&expected(), &instance, &platform())
    }

    #[test]
    fn version_fields_that_cannot_be_recorded_or_repeated_ids_are_anomalies() {
        for (pointer, value, fragment) in [
            (
                "/data/0/lastChanged",
                json!("2026-12-01T10:00:00Z "),
                "lastChanged",
            ),
            ("/data/0/lastChanged", json!("yesterday"), "not a time"),
            (
                "/data/0/lastChanged",
                json!("2026-12-01T10:00:00\u{e9}Z"),
                "lastChanged",
            ),
        ] {
            let mut v = good();
            v["data"][0][pointer.rsplit('/').next().unwrap()] = value.clone();
            let err = check(v).unwrap_err();
            assert!(err.contains(fragment), "{pointer} {value}: {err}");
        }
        let mut twice = good();
        let first = twice["data"][0].clone();
        twice["data"].as_array_mut().unwrap().push(first);
        assert!(check(twice).unwrap_err().contains("listed twice"));

        let mut odd = good();
        odd["data"][0]["contentHash"] = json!(" abc");
        odd["data"][0]["contentType"] = json!("text/plain\r\nX-Evil: 1");
        let elements = check(odd).unwrap();
        assert_eq!(elements[0].content_hash, None, "left out");
        assert_eq!(elements[0].content_type, "application/octet-stream");
        let mut long = good();
        long["data"][0]["contentHash"] = json!("x".repeat(300));
        assert_eq!(check(long).unwrap()[0].content_hash, None);

        let mut fine = good();
        fine["data"][0]["lastChanged"] = json!("2026-12-01T10:00:00.1234567Z");
        fine["data"][0]["contentHash"] = json!("sha256:abc=");
        let elements = check(fine).unwrap();
        assert_eq!(
            elements[0].last_changed.as_deref(),
            Some("2026-12-01T10:00:00.1234567Z")
        );
    }

    #[test]
    fn a_consistent_instance_passes() {
        let elements = check(good()).unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].size, 401);
        assert_eq!(elements[0].scan, Scan::Clean);
    }

    #[test]
    fn anomalies_are_refused() {
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "other instance id",
                Box::new(|v| v["id"] = json!("1337/6b3323c8-7baf-4612-b8a6-5eac407f4d0c")),
            ),
            ("other app", Box::new(|v| v["appId"] = json!("ttd/other"))),
            (
                "foreign self link",
                Box::new(|v| {
                    v["selfLinks"]["platform"] = json!(format!(
                        "https://evil.example/storage/api/v1/instances/1337/{GUID}"
                    ))
                }),
            ),
            (
                "odd port",
                Box::new(|v| {
                    v["selfLinks"]["platform"] = json!(format!(
                        "https://platform.tt02.altinn.no:444/storage/api/v1/instances/1337/{GUID}"
                    ))
                }),
            ),
            (
                "traversal path",
                Box::new(|v| {
                    v["data"][0]["blobStoragePath"] = json!(format!("ttd/app/{GUID}/data/../../x"))
                }),
            ),
            (
                "other instance path",
                Box::new(|v| {
                    v["data"][0]["blobStoragePath"] = json!(format!(
                        "ttd/app/6b3323c8-7baf-4612-b8a6-5eac407f4d0c/data/{DATA}"
                    ))
                }),
            ),
            (
                "element link elsewhere",
                Box::new(|v| {
                    v["data"][0]["selfLinks"]["platform"] = json!(format!(
                        "https://platform.tt02.altinn.no/storage/api/v1/instances/1337/{GUID}/data/6b3323c8-7baf-4612-b8a6-5eac407f4d0c"
                    ))
                }),
            ),
            (
                "encoded link",
                Box::new(|v| {
                    v["data"][0]["selfLinks"]["platform"] = json!(format!(
                        "https://platform.tt02.altinn.no/storage/api/v1/instances/1337/{GUID}%2F..%2Fdata/{DATA}"
                    ))
                }),
            ),
            (
                "non-guid element",
                Box::new(|v| v["data"][0]["id"] = json!("../x")),
            ),
            (
                "negative size",
                Box::new(|v| v["data"][0]["size"] = json!(-1)),
            ),
            (
                "missing size",
                Box::new(|v| {
                    v["data"][0].as_object_mut().unwrap().remove("size");
                }),
            ),
            (
                "element of another instance",
                Box::new(|v| {
                    v["data"][0]["instanceGuid"] = json!("6b3323c8-7baf-4612-b8a6-5eac407f4d0c")
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut value = good();
            mutate(&mut value);
            assert!(check(value).is_err(), "accepted: {name}");
        }
    }

    #[test]
    fn scan_states_and_deletes_are_read() {
        let mut v = good();
        v["data"][0]["fileScanResult"] = json!("Pending");
        assert_eq!(check(v).unwrap()[0].scan, Scan::Pending);
        let mut v = good();
        v["data"][0]["fileScanResult"] = json!("Infected");
        v["data"][0]["deleteStatus"] = json!({"isHardDeleted": true});
        let e = &check(v).unwrap()[0];
        assert_eq!(e.scan, Scan::Infected);
        assert!(e.hard_deleted);
    }
}

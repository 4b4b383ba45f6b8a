//! What the archive holds for one instance: blob names, blob metadata keys, the manifest, and
//! the fingerprint that ties a manifest to the element versions it describes.
//!
//! Names are always built here from a validated [`InstanceRef`] — never read back from a
//! manifest or from Altinn's `blobStoragePath` — so a tampered manifest cannot point the
//! archive (or a confirmation) at another blob.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::InstanceRef;

/// Blob metadata keys. The first four are the reference system's; the others say which
/// version of an element the blob holds and what its bytes hash to (design §2.6).
pub mod meta {
    pub const FILENAME: &str = "filename";
    pub const DATA_TYPE: &str = "datatype";
    pub const SIZE: &str = "size";
    pub const INSTANCE_ID: &str = "instanceid";
    /// The element's `lastChanged`, exactly as Altinn wrote it.
    pub const LAST_CHANGED: &str = "lastchanged";
    /// The element's `contentHash`, when Altinn reports one.
    pub const CONTENT_HASH: &str = "contenthash";
    /// SHA-256 of the stored bytes, lower-case hex, computed while they streamed in.
    pub const SHA256: &str = "sha256";
    /// On the instance JSON: the instance's `process.ended` when it was read (absent while the
    /// process runs), so an instance archived before its process ended is archived again —
    /// its JSON at least — once it has.
    pub const PROCESS_ENDED: &str = "processended";
    /// On `manifest.json`: the [`super::fingerprint`] of the elements it lists, so one listing
    /// of the instance tells whether the manifest describes the current elements without
    /// reading it.
    pub const ELEMENTS: &str = "elements";
    /// On `manifest.json`: the [`super::content_fingerprint`] of the SHA-256s it records, so
    /// the same listing tells whether the manifest's hashes are those of the stored blobs.
    pub const HASHES: &str = "hashes";
}

/// Blob names for one instance, derived only from a validated [`InstanceRef`].
#[derive(Clone, Debug)]
pub struct InstancePaths {
    folder: String,
    guid: Uuid,
}

impl InstancePaths {
    pub fn new(instance: &InstanceRef) -> Self {
        InstancePaths {
            folder: format!(
                "{}/{}/{}",
                instance.org.as_str(),
                instance.app.as_str(),
                instance.instance_guid
            ),
            guid: instance.instance_guid,
        }
    }
    /// `{org}/{app}/{guid}/`: every blob of the instance, and nothing of another instance
    /// (GUIDs have a fixed length, so no other instance's folder starts with this).
    pub fn prefix(&self) -> String {
        format!("{}/", self.folder)
    }
    pub fn instance_json(&self) -> String {
        format!("{}/{}", self.folder, self.guid)
    }
    pub fn data(&self, data_id: Uuid) -> String {
        format!("{}/data/{data_id}", self.folder)
    }
    pub fn quarantine(&self, data_id: Uuid) -> String {
        format!("{}/quarantine/{data_id}", self.folder)
    }
    pub fn manifest(&self) -> String {
        format!("{}/manifest.json", self.folder)
    }
}

/// The record that an instance is archived: one entry per data element, with what a
/// downstream system needs to verify every file (size, `lastChanged`, SHA-256).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub instance_id: String,
    pub app_id: String,
    /// The instance's `lastChanged` when it was archived (information: later metadata-only
    /// changes, such as the confirmation itself, do not make the archive stale; the elements'
    /// own `lastChanged` decide).
    pub last_changed: Option<String>,
    pub archived_at: String,
    pub instance_blob: String,
    pub elements: Vec<ManifestElement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestElement {
    pub id: Uuid,
    pub data_type: String,
    pub size: u64,
    pub content_type: String,
    /// Where the bytes are, for readers of the archive. The product itself never reads this
    /// back: it rebuilds every name from the instance's identity ([`InstancePaths`]).
    pub blob_name: String,
    /// The original file name (UTF-8; blob metadata holds it percent-encoded).
    pub filename: Option<String>,
    #[serde(default)]
    pub quarantined: bool,
    #[serde(default)]
    pub hard_deleted: bool,
    /// The element's `lastChanged` in Altinn when its bytes were downloaded.
    #[serde(default)]
    pub last_changed: Option<String>,
    /// The element's `contentHash` in Altinn, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// SHA-256 of the stored bytes (lower-case hex).
    #[serde(default)]
    pub sha256: String,
}

/// One version of one data element: what makes a stored copy current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementVersion<'a> {
    pub id: Uuid,
    pub size: u64,
    pub last_changed: Option<&'a str>,
    pub content_hash: Option<&'a str>,
    pub quarantined: bool,
}

/// A digest of a set of element versions, independent of their order: equal exactly when the
/// same elements are listed with the same size, `lastChanged`, `contentHash` and quarantine.
/// Stored as the manifest's [`meta::ELEMENTS`] metadata.
pub fn fingerprint<'a>(versions: impl IntoIterator<Item = ElementVersion<'a>>) -> String {
    let mut lines: Vec<String> = versions
        .into_iter()
        .map(|v| {
            // Tabs and newlines cannot occur in a GUID, a number or an ASCII metadata value,
            // and `lastChanged`/`contentHash` are escaped with `{:?}`, so lines are unambiguous.
            format!(
                "{}\t{}\t{:?}\t{:?}\t{}\n",
                v.id, v.size, v.last_changed, v.content_hash, v.quarantined
            )
        })
        .collect();
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    format!("{:x}", hasher.finalize())
}

/// A digest of `(element id, SHA-256 of its stored bytes)` pairs, independent of their order.
/// Stored as the manifest's [`meta::HASHES`] metadata.
pub fn content_fingerprint<'a>(hashes: impl IntoIterator<Item = (Uuid, &'a str)>) -> String {
    let mut lines: Vec<String> = hashes
        .into_iter()
        .map(|(id, sha256)| format!("{id}\t{sha256}\n"))
        .collect();
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_reference_layout() {
        let apps = crate::domain::BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap();
        let r = InstanceRef::from_source(
            "https://ttd.apps.tt02.altinn.no/ttd/my-app/instances/1337/bd9edd59-b18c-4726-aa9e-6b150eade814",
            &apps,
        )
        .unwrap();
        let p = InstancePaths::new(&r);
        let d = Uuid::parse_str("8a8a01ae-9533-4aa9-b914-8ab0fae6ea0d").unwrap();
        assert_eq!(
            p.instance_json(),
            "ttd/my-app/bd9edd59-b18c-4726-aa9e-6b150eade814/bd9edd59-b18c-4726-aa9e-6b150eade814"
        );
        assert_eq!(
            p.data(d),
            "ttd/my-app/bd9edd59-b18c-4726-aa9e-6b150eade814/data/8a8a01ae-9533-4aa9-b914-8ab0fae6ea0d"
        );
        assert_eq!(
            p.quarantine(d),
            "ttd/my-app/bd9edd59-b18c-4726-aa9e-6b150eade814/quarantine/8a8a01ae-9533-4aa9-b914-8ab0fae6ea0d"
        );
        assert_eq!(
            p.manifest(),
            "ttd/my-app/bd9edd59-b18c-4726-aa9e-6b150eade814/manifest.json"
        );
        for name in [p.instance_json(), p.data(d), p.quarantine(d), p.manifest()] {
            assert!(name.starts_with(&p.prefix()), "{name}");
        }
    }

    #[test]
    fn the_fingerprint_changes_with_every_field_and_not_with_order() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let v = |id, size, changed, hash, quarantined| ElementVersion {
            id,
            size,
            last_changed: changed,
            content_hash: hash,
            quarantined,
        };
        let base = [
            v(a, 10, Some("2026-01-01T00:00:00Z"), None, false),
            v(b, 20, None, None, false),
        ];
        let reference = fingerprint(base);
        assert_eq!(reference, fingerprint([base[1], base[0]]), "order");
        assert_eq!(reference.len(), 64);
        for changed in [
            [v(a, 11, Some("2026-01-01T00:00:00Z"), None, false), base[1]],
            [v(a, 10, Some("2026-01-01T00:00:01Z"), None, false), base[1]],
            [
                v(a, 10, Some("2026-01-01T00:00:00Z"), Some("x"), false),
                base[1],
            ],
            [v(a, 10, Some("2026-01-01T00:00:00Z"), None, true), base[1]],
            [base[0], v(Uuid::from_u128(3), 20, None, None, false)],
        ] {
            assert_ne!(reference, fingerprint(changed), "{changed:?}");
        }
        assert_ne!(reference, fingerprint([base[0]]), "an element fewer");
    }
}

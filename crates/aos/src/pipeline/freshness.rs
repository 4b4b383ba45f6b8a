//! Whether what the archive holds is the instance as Altinn has it now (design §2.6).
//!
//! An element's stored copy is **current** only when a listing of the instance's folder shows
//! its blob — at the name rebuilt from the instance's identity — with the element's `size`,
//! its `lastChanged` (and its `contentHash`, when Altinn reports one) in the blob's metadata,
//! and the SHA-256 this product recorded when it wrote the bytes. Size alone is not enough: a
//! form changed by one digit, or a regenerated PDF, has the same length.
//!
//! An instance is **archived** only when, in the same listing, the manifest's fingerprint
//! ([`crate::archive::fingerprint`]) equals the fingerprint of the instance's elements now,
//! the instance JSON is there, and every element is current. A manifest is never trusted on
//! its own: a data blob deleted or truncated after it was written makes the instance not
//! archived, and the next attempt downloads what is missing.
//!
//! Elements of the feedback data type are left out of the archived/not-archived decision:
//! the feedback step adds one after archiving, and it is this system's own output.

use crate::archive::{
    ElementVersion, InstanceListing, InstancePaths, ascii_metadata_value, content_fingerprint,
    fingerprint, meta,
};

use super::identity::{CheckedElement, Scan};

/// Infected elements are kept apart, under `quarantine/`.
pub fn blob_name(paths: &InstancePaths, element: &CheckedElement) -> String {
    match element.scan {
        Scan::Infected => paths.quarantine(element.id),
        _ => paths.data(element.id),
    }
}

/// What makes a stored copy of `element` current.
pub fn version(element: &CheckedElement) -> ElementVersion<'_> {
    ElementVersion {
        id: element.id,
        size: element.size,
        last_changed: element.last_changed.as_deref(),
        content_hash: element.content_hash.as_deref(),
        quarantined: element.scan == Scan::Infected,
    }
}

/// The fingerprint of the elements that decide whether the instance is archived: all of them
/// except those of `ignored` (the feedback data type).
pub fn elements_fingerprint(elements: &[CheckedElement], ignored: Option<&str>) -> String {
    fingerprint(
        elements
            .iter()
            .filter(|e| ignored != Some(e.data_type.as_str()))
            .map(version),
    )
}

/// The [`content_fingerprint`] of the SHA-256s `sha256_of` gives for the elements that decide
/// (all but those of `ignored`).
pub fn hashes_fingerprint<'a>(
    elements: &'a [CheckedElement],
    ignored: Option<&str>,
    sha256_of: impl Fn(&'a CheckedElement) -> &'a str,
) -> String {
    content_fingerprint(
        elements
            .iter()
            .filter(|e| ignored != Some(e.data_type.as_str()))
            .map(|e| (e.id, sha256_of(e))),
    )
}

/// `Ok` when the listing shows a current copy of `element`; otherwise why not.
pub fn element_current(
    listing: &InstanceListing,
    paths: &InstancePaths,
    element: &CheckedElement,
) -> Result<(), String> {
    let name = blob_name(paths, element);
    let Some(blob) = listing.get(&name) else {
        return Err(format!("{name} is missing"));
    };
    if blob.size != element.size {
        return Err(format!(
            "{name} is {} bytes, the element is {}",
            blob.size, element.size
        ));
    }
    let stored_changed = blob.meta(meta::LAST_CHANGED);
    let wanted_changed = element.last_changed.as_deref().map(ascii_metadata_value);
    if stored_changed != wanted_changed.as_deref() {
        return Err(format!(
            "{name} holds the version of {}, the element was changed {}",
            stored_changed.unwrap_or("(unknown)"),
            wanted_changed.as_deref().unwrap_or("(no lastChanged)")
        ));
    }
    if let Some(hash) = &element.content_hash
        && blob.meta(meta::CONTENT_HASH) != Some(ascii_metadata_value(hash).as_str())
    {
        return Err(format!("{name} holds another contentHash than the element"));
    }
    if blob.sha256().is_none() {
        return Err(format!("{name} has no SHA-256 recorded"));
    }
    Ok(())
}

/// The instance as Altinn has it now, as far as the archive's currency goes.
#[derive(Clone, Copy, Debug)]
pub struct Current<'a> {
    pub elements: &'a [CheckedElement],
    /// `process.ended`, when the process has ended.
    pub process_ended: Option<&'a str>,
    /// Elements of this data type (the feedback's) are left out.
    pub ignored: Option<&'a str>,
}

/// `Ok` when the listing shows the instance archived as it is now: manifest for exactly these
/// element versions, the instance JSON read after the process ended (when it has), and a
/// current copy of every element (feedback elements aside). Otherwise the first reason it is
/// not.
pub fn archived(
    listing: &InstanceListing,
    paths: &InstancePaths,
    current: Current<'_>,
) -> Result<(), String> {
    let Current {
        elements,
        process_ended,
        ignored,
    } = current;
    let Some(manifest) = listing.get(&paths.manifest()) else {
        return Err("no manifest".into());
    };
    if manifest.meta(meta::ELEMENTS) != Some(elements_fingerprint(elements, ignored).as_str()) {
        return Err("the manifest lists other elements or other versions of them".into());
    }
    let Some(json) = listing.get(&paths.instance_json()) else {
        return Err(format!("{} is missing", paths.instance_json()));
    };
    let wanted_end = process_ended.map(ascii_metadata_value);
    if json.meta(meta::PROCESS_ENDED) != wanted_end.as_deref() {
        return Err(format!(
            "{} was read before the process ended",
            paths.instance_json()
        ));
    }
    elements
        .iter()
        .filter(|e| ignored != Some(e.data_type.as_str()))
        .try_for_each(|e| element_current(listing, paths, e))?;
    // Every blob is current; the manifest must record exactly their hashes.
    let stored = hashes_fingerprint(elements, ignored, |e| {
        listing
            .get(&blob_name(paths, e))
            .and_then(|b| b.sha256())
            .unwrap_or_default()
    });
    if manifest.meta(meta::HASHES) != Some(stored.as_str()) {
        return Err("the manifest records other SHA-256s than the stored blobs".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use uuid::Uuid;

    use super::*;
    use crate::archive::StoredBlob;
    use crate::domain::{BaseUrl, InstanceRef};

    const CHANGED: &str = "2026-12-01T10:00:00.1234567Z";
    const ENDED: &str = "2026-12-01T10:05:00.1234567Z";

    /// The instance now: `elements`, its process ended at [`ENDED`].
    fn now<'a>(elements: &'a [CheckedElement], ignored: Option<&'a str>) -> Current<'a> {
        Current {
            elements,
            process_ended: Some(ENDED),
            ignored,
        }
    }
    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn paths() -> InstancePaths {
        let apps = BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap();
        InstancePaths::new(
            &InstanceRef::from_source(
                "https://ttd.apps.tt02.altinn.no/ttd/a1/instances/1/bd9edd59-b18c-4726-aa9e-6b150eade814",
                &apps,
            )
            .unwrap(),
        )
    }

    fn element(n: u128, data_type: &str) -> CheckedElement {
        CheckedElement {
            id: Uuid::from_u128(n),
            data_type: data_type.into(),
            content_type: "application/pdf".into(),
            size: 100,
            last_changed: Some(CHANGED.into()),
            content_hash: None,
            filename: None,
            scan: Scan::Clean,
            hard_deleted: false,
        }
    }

    fn stored(size: u64, pairs: &[(&str, &str)]) -> StoredBlob {
        StoredBlob {
            size,
            last_modified: None,
            metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    /// The listing an archive run of `elements` leaves behind.
    fn archived_listing(elements: &[CheckedElement], ignored: Option<&str>) -> InstanceListing {
        let p = paths();
        let mut blobs: Vec<(String, StoredBlob)> = elements
            .iter()
            .map(|e| {
                (
                    blob_name(&p, e),
                    stored(
                        e.size,
                        &[
                            (meta::LAST_CHANGED, e.last_changed.as_deref().unwrap()),
                            (meta::SHA256, SHA),
                        ],
                    ),
                )
            })
            .collect();
        blobs.push((
            p.instance_json(),
            stored(10, &[(meta::PROCESS_ENDED, ENDED)]),
        ));
        let fp = elements_fingerprint(elements, ignored);
        let hashes = hashes_fingerprint(elements, ignored, |_| SHA);
        blobs.push((
            p.manifest(),
            stored(
                10,
                &[
                    (meta::ELEMENTS, fp.as_str()),
                    (meta::HASHES, hashes.as_str()),
                ],
            ),
        ));
        InstanceListing::from_blobs(blobs)
    }

    #[test]
    fn an_archive_of_exactly_these_versions_is_archived() {
        let elements = [element(1, "form"), element(2, "pdf")];
        let listing = archived_listing(&elements, None);
        assert_eq!(archived(&listing, &paths(), now(&elements, None)), Ok(()));
    }

    #[test]
    fn same_size_with_another_last_changed_is_not_current() {
        let elements = [element(1, "form")];
        let listing = archived_listing(&elements, None);
        let mut changed = element(1, "form");
        changed.last_changed = Some("2026-12-01T10:00:05Z".into());
        let why = element_current(&listing, &paths(), &changed).unwrap_err();
        assert!(why.contains("version"), "{why}");
        assert!(archived(&listing, &paths(), now(&[changed], None)).is_err());
    }

    #[test]
    fn a_missing_or_short_blob_is_not_archived_whatever_the_manifest_says() {
        let elements = [element(1, "form"), element(2, "pdf")];
        let p = paths();
        let full = archived_listing(&elements, None);
        let without = InstanceListing::from_blobs(
            [p.manifest(), p.instance_json(), blob_name(&p, &elements[0])]
                .into_iter()
                .map(|n| (n.clone(), full.get(&n).unwrap().clone())),
        );
        let why = archived(&without, &p, now(&elements, None)).unwrap_err();
        assert!(why.contains("missing"), "{why}");
        let mut short = full.get(&blob_name(&p, &elements[1])).unwrap().clone();
        short.size = 99;
        let truncated = InstanceListing::from_blobs(
            [p.manifest(), p.instance_json(), blob_name(&p, &elements[0])]
                .into_iter()
                .map(|n| (n.clone(), full.get(&n).unwrap().clone()))
                .chain([(blob_name(&p, &elements[1]), short)]),
        );
        let why = archived(&truncated, &p, now(&elements, None)).unwrap_err();
        assert!(why.contains("99 bytes"), "{why}");
    }

    #[test]
    fn a_manifest_for_other_elements_or_without_instance_json_is_not_archived() {
        let elements = [element(1, "form"), element(2, "pdf")];
        let listing = archived_listing(&elements[..1], None);
        assert!(archived(&listing, &paths(), now(&elements, None)).is_err());
        let p = paths();
        let full = archived_listing(&elements, None);
        let no_json = InstanceListing::from_blobs(
            [
                p.manifest(),
                blob_name(&p, &elements[0]),
                blob_name(&p, &elements[1]),
            ]
            .into_iter()
            .map(|n| (n.clone(), full.get(&n).unwrap().clone())),
        );
        assert!(archived(&no_json, &p, now(&elements, None)).is_err());
    }

    #[test]
    fn an_instance_json_read_before_the_process_ended_is_not_archived() {
        let elements = [element(1, "form")];
        let listing = archived_listing(&elements, None);
        let running = Current {
            process_ended: None,
            ..now(&elements, None)
        };
        let why = archived(&listing, &paths(), running).unwrap_err();
        assert!(why.contains("before the process ended"), "{why}");
        let later = Current {
            process_ended: Some("2026-12-02T00:00:00Z"),
            ..now(&elements, None)
        };
        assert!(archived(&listing, &paths(), later).is_err());
    }

    #[test]
    fn a_manifest_whose_hashes_are_not_the_blobs_is_not_archived() {
        let elements = [element(1, "form")];
        let p = paths();
        let listing = archived_listing(&elements, None);
        let mut blobs: Vec<(String, StoredBlob)> = [p.instance_json(), blob_name(&p, &elements[0])]
            .into_iter()
            .map(|n| (n.clone(), listing.get(&n).unwrap().clone()))
            .collect();
        let mut manifest = listing.get(&p.manifest()).unwrap().clone();
        manifest.metadata.insert(
            meta::HASHES.into(),
            hashes_fingerprint(&elements, None, |_| "1111"),
        );
        blobs.push((p.manifest(), manifest));
        let why = archived(
            &InstanceListing::from_blobs(blobs),
            &p,
            now(&elements, None),
        )
        .unwrap_err();
        assert!(why.contains("SHA-256"), "{why}");
    }

    #[test]
    fn a_blob_without_sha256_or_with_another_content_hash_is_not_current() {
        let p = paths();
        let e = element(1, "form");
        let listing = InstanceListing::from_blobs([(
            blob_name(&p, &e),
            stored(100, &[(meta::LAST_CHANGED, CHANGED)]),
        )]);
        assert!(element_current(&listing, &p, &e).is_err());
        let mut hashed = e.clone();
        hashed.content_hash = Some("abc".into());
        let listing = archived_listing(std::slice::from_ref(&e), None);
        assert!(element_current(&listing, &p, &hashed).is_err());
    }

    #[test]
    fn feedback_elements_added_later_do_not_unarchive_the_instance() {
        let elements = [element(1, "form")];
        let listing = archived_listing(&elements, Some("feedback"));
        let with_feedback = [element(1, "form"), element(9, "feedback")];
        assert_eq!(
            archived(&listing, &paths(), now(&with_feedback, Some("feedback"))),
            Ok(())
        );
        assert!(archived(&listing, &paths(), now(&with_feedback, None)).is_err());
    }
}

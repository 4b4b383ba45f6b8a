//! Which storage operation a request is, from its method, path and `comp`/`restype` query
//! parameters — the way the storage REST API itself tells its operations apart. Pure, so the
//! table is unit-tested without a server.

use std::fmt;

/// The storage service a request went to (the proxy listens on one port per service, as
/// Azurite does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Blob,
    Queue,
}

/// A storage operation, as counted and as targeted by fault rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// List Blobs (`comp=list`), also List Containers.
    BlobList,
    /// Get Blob Properties (`HEAD` on a blob).
    BlobHead,
    /// Get Blob (download).
    BlobGet,
    /// Put Block (`comp=block`).
    PutBlock,
    /// Put Block List (`comp=blocklist`): the commit of staged blocks.
    PutBlockList,
    /// Put Blob: a whole blob in one request.
    PutBlob,
    /// Delete Blob.
    BlobDelete,
    /// Lease Blob / Lease Container (`comp=lease`).
    Lease,
    /// Create Container (`PUT ?restype=container`).
    ContainerCreate,
    /// Any other blob request (metadata, properties, Get Block List, container properties…).
    BlobOther,
    /// Put Message.
    QueuePut,
    /// Get Messages (not a peek).
    QueueGet,
    /// Delete Message.
    QueueDelete,
    /// Update Message (visibility and/or text).
    QueueUpdate,
    /// Create Queue and any other queue request (peek, metadata, clear).
    QueueOther,
}

impl Operation {
    /// Every operation, in the order tables print them.
    pub const ALL: [Operation; 15] = [
        Operation::BlobList,
        Operation::BlobHead,
        Operation::BlobGet,
        Operation::PutBlock,
        Operation::PutBlockList,
        Operation::PutBlob,
        Operation::BlobDelete,
        Operation::Lease,
        Operation::ContainerCreate,
        Operation::BlobOther,
        Operation::QueuePut,
        Operation::QueueGet,
        Operation::QueueDelete,
        Operation::QueueUpdate,
        Operation::QueueOther,
    ];

    /// The name the counts and tables use.
    pub fn name(self) -> &'static str {
        match self {
            Operation::BlobList => "blob list",
            Operation::BlobHead => "blob head",
            Operation::BlobGet => "blob get",
            Operation::PutBlock => "put block",
            Operation::PutBlockList => "put block list",
            Operation::PutBlob => "put blob",
            Operation::BlobDelete => "blob delete",
            Operation::Lease => "lease",
            Operation::ContainerCreate => "container create",
            Operation::BlobOther => "blob other",
            Operation::QueuePut => "queue put message",
            Operation::QueueGet => "queue get messages",
            Operation::QueueDelete => "queue delete message",
            Operation::QueueUpdate => "queue update message",
            Operation::QueueOther => "queue create/other",
        }
    }

    pub fn service(self) -> Service {
        match self {
            Operation::QueuePut
            | Operation::QueueGet
            | Operation::QueueDelete
            | Operation::QueueUpdate
            | Operation::QueueOther => Service::Queue,
            _ => Service::Blob,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Classifies one request to `service`: `path` is path-style (`/account/container/blob…`,
/// `/account/queue/messages/id`), `query` the raw query string.
pub fn classify(service: Service, method: &str, path: &str, query: Option<&str>) -> Operation {
    let mut comp = None;
    let mut restype = None;
    let mut peek = false;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "comp" => comp = Some(value.to_ascii_lowercase()),
            "restype" => restype = Some(value.to_ascii_lowercase()),
            "peekonly" => peek = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    // Segments after the account: the container or queue, then the blob name or `messages`.
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    match service {
        Service::Blob => classify_blob(method, &segments, comp.as_deref(), restype.as_deref()),
        Service::Queue => classify_queue(method, &segments, peek),
    }
}

fn classify_blob(
    method: &str,
    segments: &[&str],
    comp: Option<&str>,
    restype: Option<&str>,
) -> Operation {
    match (comp, method) {
        (Some("list"), _) => return Operation::BlobList,
        (Some("lease"), _) => return Operation::Lease,
        (Some("block"), "PUT") => return Operation::PutBlock,
        (Some("blocklist"), "PUT") => return Operation::PutBlockList,
        (Some(_), _) => return Operation::BlobOther,
        (None, _) => {}
    }
    if restype == Some("container") {
        return if method == "PUT" {
            Operation::ContainerCreate
        } else {
            Operation::BlobOther
        };
    }
    if segments.len() < 2 {
        return Operation::BlobOther;
    }
    match method {
        "HEAD" => Operation::BlobHead,
        "GET" => Operation::BlobGet,
        "PUT" => Operation::PutBlob,
        "DELETE" => Operation::BlobDelete,
        _ => Operation::BlobOther,
    }
}

fn classify_queue(method: &str, segments: &[&str], peek: bool) -> Operation {
    if segments.get(1) != Some(&"messages") {
        return Operation::QueueOther;
    }
    let one_message = segments.len() >= 3;
    match (method, one_message) {
        ("POST", false) => Operation::QueuePut,
        ("GET", false) if !peek => Operation::QueueGet,
        ("DELETE", true) => Operation::QueueDelete,
        ("PUT", true) => Operation::QueueUpdate,
        _ => Operation::QueueOther,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(method: &str, path: &str, query: &str) -> Operation {
        classify(Service::Blob, method, path, Some(query))
    }

    fn queue(method: &str, path: &str, query: &str) -> Operation {
        classify(Service::Queue, method, path, Some(query))
    }

    #[test]
    fn blob_operations_are_told_apart_by_method_and_comp() {
        let blob_path = "/devstoreaccount1/inbound/ttd/app/guid/data/id";
        let cases = [
            (
                "GET",
                "/devstoreaccount1/inbound",
                "restype=container&comp=list&prefix=ttd%2F",
                Operation::BlobList,
            ),
            ("GET", "/devstoreaccount1", "comp=list", Operation::BlobList),
            ("HEAD", blob_path, "", Operation::BlobHead),
            ("GET", blob_path, "", Operation::BlobGet),
            (
                "PUT",
                blob_path,
                "comp=block&blockid=YmxvY2s%3D",
                Operation::PutBlock,
            ),
            ("PUT", blob_path, "comp=blocklist", Operation::PutBlockList),
            ("GET", blob_path, "comp=blocklist", Operation::BlobOther),
            ("PUT", blob_path, "", Operation::PutBlob),
            ("DELETE", blob_path, "", Operation::BlobDelete),
            ("PUT", blob_path, "comp=lease", Operation::Lease),
            (
                "PUT",
                "/devstoreaccount1/aos-state",
                "restype=container&comp=lease",
                Operation::Lease,
            ),
            (
                "PUT",
                "/devstoreaccount1/inbound",
                "restype=container",
                Operation::ContainerCreate,
            ),
            (
                "GET",
                "/devstoreaccount1/inbound",
                "restype=container",
                Operation::BlobOther,
            ),
            ("PUT", blob_path, "comp=metadata", Operation::BlobOther),
            ("POST", blob_path, "", Operation::BlobOther),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(
                blob(method, path, query),
                expected,
                "{method} {path}?{query}"
            );
        }
    }

    #[test]
    fn the_query_is_decoded_and_case_insensitive_in_its_values() {
        assert_eq!(
            blob("PUT", "/a/c/b", "comp=BlockList&timeout=30"),
            Operation::PutBlockList
        );
        assert_eq!(
            classify(Service::Blob, "HEAD", "/a/c/b", None),
            Operation::BlobHead
        );
    }

    #[test]
    fn queue_operations_are_told_apart_by_method_and_path() {
        let messages = "/devstoreaccount1/events-inbound/messages";
        let one = "/devstoreaccount1/events-inbound/messages/3f2a";
        let cases = [
            ("POST", messages, "", Operation::QueuePut),
            (
                "GET",
                messages,
                "numofmessages=32&visibilitytimeout=30",
                Operation::QueueGet,
            ),
            ("GET", messages, "peekonly=true", Operation::QueueOther),
            ("DELETE", one, "popreceipt=abc", Operation::QueueDelete),
            (
                "PUT",
                one,
                "popreceipt=abc&visibilitytimeout=3",
                Operation::QueueUpdate,
            ),
            ("DELETE", messages, "", Operation::QueueOther),
            (
                "PUT",
                "/devstoreaccount1/events-inbound",
                "",
                Operation::QueueOther,
            ),
            (
                "GET",
                "/devstoreaccount1/events-inbound",
                "comp=metadata",
                Operation::QueueOther,
            ),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(
                queue(method, path, query),
                expected,
                "{method} {path}?{query}"
            );
        }
    }

    #[test]
    fn every_operation_has_a_distinct_name_and_its_service() {
        let names: std::collections::BTreeSet<_> =
            Operation::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Operation::ALL.len());
        assert_eq!(Operation::QueueUpdate.service(), Service::Queue);
        assert_eq!(Operation::PutBlockList.service(), Service::Blob);
    }
}

//! The blob archive: where each instance and its data elements are stored, and how.
//!
//! Layout (reference-compatible, in the archive container; design §2.3):
//! - `{org}/{app}/{guid}/{guid}` — the instance JSON, byte-for-byte as Altinn returned it;
//! - `{org}/{app}/{guid}/data/{dataId}` — each data element, with its content type and
//!   metadata `filename` (percent-encoded if not ASCII), `datatype`, `size`, `instanceid`,
//!   and which version it holds: `lastchanged`, `contenthash` (when Altinn gives one) and the
//!   `sha256` of the stored bytes;
//! - `{org}/{app}/{guid}/quarantine/{dataId}` — elements the virus scan found infected;
//! - `{org}/{app}/{guid}/manifest.json` — written last, only after every element is stored;
//!   it lists every element with its size, `lastChanged` and SHA-256, and its metadata
//!   `elements` fingerprints that list. It means "archived" only when a listing of the folder
//!   agrees with it ([`listing`]).
//!
//! ## Module map
//!
//! - `layout.rs` — [`InstancePaths`] (every name, built from the instance's identity),
//!   [`Manifest`], the metadata keys ([`meta`]) and the element [`fingerprint`].
//! - `upload.rs` — streaming an element into a block blob within the process-wide buffer
//!   budget, hashing it on the way.
//! - `listing.rs` — one listing of an instance's folder with sizes and metadata.
//! - this file — [`Archive`] (the container and the small operations: put, read, conditional
//!   put and delete, leases) and [`ArchiveError`].

mod layout;
mod listing;
mod upload;

pub use layout::{
    ElementVersion, InstancePaths, Manifest, ManifestElement, content_fingerprint, fingerprint,
    meta,
};
pub use listing::{InstanceListing, StoredBlob};
pub use upload::{BLOCK_SIZE, BUFFER_BUDGET, BufferReservation, StoredBytes};

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::http::StatusCode;
use azure_storage_blob::models::{BlobClientGetPropertiesResultHeaders, BlobClientUploadOptions};
use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore};

use crate::storage::StorageEndpoint;

/// Why an archive operation failed. Storage hiccups and broken downloads are worth a retry;
/// a download that completed with another length than the element's `size`
/// ([`ArchiveError::SizeMismatch`]) is not: Altinn's metadata and its bytes disagree.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("blob storage: {0}")]
    Storage(#[from] azure_core::Error),
    #[error("download of {blob} broke after {received} bytes: {detail}")]
    Source {
        blob: String,
        received: u64,
        detail: String,
    },
    /// The source delivered a whole body of another length than the element's `size`.
    #[error("{blob}: the element's size is {expected} bytes, Altinn sent {received}")]
    SizeMismatch {
        blob: String,
        expected: u64,
        received: u64,
    },
    #[error("manifest {blob} is unreadable: {detail}")]
    BadManifest { blob: String, detail: String },
}

/// What to store with an element's bytes.
#[derive(Clone, Debug)]
pub struct BlobInfo {
    pub content_type: String,
    pub metadata: HashMap<String, String>,
}

/// The archive container.
#[derive(Clone)]
pub struct Archive {
    storage: StorageEndpoint,
    container: String,
    created: Arc<OnceCell<()>>,
    /// Block-buffer budget in KiB ([`BUFFER_BUDGET`]), shared by clones.
    buffers: Arc<Semaphore>,
}

impl Archive {
    pub fn new(storage: StorageEndpoint, container: impl Into<String>) -> Self {
        Archive {
            storage,
            container: container.into(),
            created: Default::default(),
            buffers: Arc::new(Semaphore::new(BUFFER_BUDGET / upload::BUDGET_UNIT)),
        }
    }

    pub fn container_name(&self) -> &str {
        &self.container
    }

    /// Creates the container on first write if it does not exist (local development; the
    /// infrastructure templates create it in Azure).
    async fn ensure_container(&self) -> Result<(), ArchiveError> {
        self.created
            .get_or_try_init(|| async {
                let container = self.storage.container(&self.container)?;
                match container.create(None).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
                    Err(e) => Err(ArchiveError::Storage(e)),
                }
            })
            .await
            .map(|_| ())
    }

    /// Whether the account answers: the container's properties (a container not created yet
    /// is an answer too).
    pub async fn probe(&self) -> Result<(), ArchiveError> {
        let container = self.storage.container(&self.container)?;
        match container.get_properties(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the container exists, created by nothing here (`aos status`: a missing archive
    /// container is a deployment or a setting to fix, and looking must not hide it).
    pub async fn container_exists(&self) -> Result<bool, ArchiveError> {
        let container = self.storage.container(&self.container)?;
        match container.get_properties(None).await {
            Ok(_) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Proves the credential may write to the container without leaving anything in it: one
    /// block is staged under `name` and never committed. An uncommitted block is no blob — no
    /// listing shows it, no `BlobCreated` event fires, immutability and versioning never see
    /// it — and the service discards it after a week.
    pub async fn probe_write(&self, name: &str) -> Result<(), ArchiveError> {
        let blob = self.storage.blob(&self.container, name)?;
        let block = Bytes::from_static(b"aos status write probe");
        blob.block_blob_client()
            .stage_block(b"aos-status-probe", block.len() as u64, block.into(), None)
            .await?;
        Ok(())
    }

    /// The size of a committed blob, or `None` when it does not exist.
    pub async fn blob_size(&self, name: &str) -> Result<Option<u64>, ArchiveError> {
        let blob = self.storage.blob(&self.container, name)?;
        match blob.get_properties(None).await {
            Ok(props) => Ok(Some(props.content_length()?.unwrap_or(0))),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a small blob whole (the manifest), or `None` when it does not exist.
    pub async fn read_small(&self, name: &str) -> Result<Option<Bytes>, ArchiveError> {
        let blob = self.storage.blob(&self.container, name)?;
        let options = azure_storage_blob::models::BlobClientDownloadOptions {
            parallel: std::num::NonZero::new(1),
            ..Default::default()
        };
        match blob.download(Some(options)).await {
            Ok(result) => Ok(Some(result.body.collect().await?)),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob; `false` when it did not exist (deleting twice is not an error, so a
    /// retried step can repeat its clean-up).
    pub async fn delete(&self, name: &str) -> Result<bool, ArchiveError> {
        let blob = self.storage.blob(&self.container, name)?;
        match blob.delete(None).await {
            Ok(_) => Ok(true),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a small blob only if it still holds exactly `handled` — the content a trigger
    /// delivered and the caller acted on. A file replaced meanwhile is left for its own
    /// trigger instead of being deleted unread: the content is compared, then the delete is
    /// conditional on the ETag read with it, so a write between the two is not lost either.
    pub async fn delete_if_unchanged(
        &self,
        name: &str,
        handled: &[u8],
    ) -> Result<ConditionalDelete, ArchiveError> {
        let Some((current, etag)) = self.read_tagged(name).await? else {
            return Ok(ConditionalDelete::AlreadyGone);
        };
        if current.as_ref() != handled {
            return Ok(ConditionalDelete::Changed);
        }
        let blob = self.storage.blob(&self.container, name)?;
        let options = azure_storage_blob::models::BlobClientDeleteOptions {
            if_match: Some(etag.into()),
            ..Default::default()
        };
        match blob.delete(Some(options)).await {
            Ok(_) => Ok(ConditionalDelete::Deleted),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                Ok(ConditionalDelete::AlreadyGone)
            }
            Err(e) if e.http_status() == Some(StatusCode::PreconditionFailed) => {
                Ok(ConditionalDelete::Changed)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a lease of `seconds` (15–60) on the marker blob `name`, creating it when needed:
    /// a lock between processes that lasts at most that long if its holder dies. `None` when
    /// another holder has it. Release it with [`Archive::release`].
    pub async fn try_lease(&self, name: &str, seconds: i32) -> Result<Option<Lease>, ArchiveError> {
        let info = BlobInfo {
            content_type: "text/plain".into(),
            metadata: Default::default(),
        };
        // Exists already (`false`) is as good as created.
        self.put_if(name, Bytes::new(), &info, None).await?;
        let blob = self.storage.blob(&self.container, name)?;
        match blob.acquire_lease(seconds, None).await {
            Ok(response) => {
                use azure_storage_blob::models::BlobClientAcquireLeaseResultHeaders;
                let id = response.lease_id()?.unwrap_or_default();
                Ok(Some(Lease {
                    blob: name.to_string(),
                    id,
                }))
            }
            // 409 LeaseAlreadyPresent: someone else holds it.
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(None),
            // A lease on a blob just deleted elsewhere: treat as taken, the caller retries.
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a new term of a lease taken with [`Archive::try_lease`] (its holder is still at
    /// work); fails when the lease was lost (it expired and another holder took it).
    pub async fn renew(&self, lease: &Lease) -> Result<(), ArchiveError> {
        let blob = self.storage.blob(&self.container, &lease.blob)?;
        blob.renew_lease(lease.id.clone(), None).await?;
        Ok(())
    }

    /// Ends a lease taken with [`Archive::try_lease`] before it expires.
    pub async fn release(&self, lease: Lease) -> Result<(), ArchiveError> {
        let blob = self.storage.blob(&self.container, &lease.blob)?;
        blob.release_lease(lease.id, None).await?;
        Ok(())
    }

    /// Writes a blob in one request (instance JSON, manifest, small elements).
    pub async fn put(
        &self,
        name: &str,
        content: Bytes,
        info: &BlobInfo,
    ) -> Result<(), ArchiveError> {
        self.ensure_container().await?;
        let blob = self.storage.blob(&self.container, name)?;
        let options = BlobClientUploadOptions {
            blob_content_type: Some(info.content_type.clone()),
            metadata: Some(info.metadata.clone()),
            ..Default::default()
        };
        blob.upload(content.into(), Some(options)).await?;
        Ok(())
    }

    /// Reads a small blob whole with its ETag, or `None` when it does not exist (state blobs
    /// that are updated with [`Self::put_if`]).
    pub async fn read_tagged(&self, name: &str) -> Result<Option<(Bytes, String)>, ArchiveError> {
        let blob = self.storage.blob(&self.container, name)?;
        let options = azure_storage_blob::models::BlobClientDownloadOptions {
            parallel: std::num::NonZero::new(1),
            ..Default::default()
        };
        match blob.download(Some(options)).await {
            Ok(result) => {
                let etag = result
                    .properties
                    .etag
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Ok(Some((result.body.collect().await?, etag)))
            }
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a blob only if it is unchanged since it was read with ETag `etag`, or, for
    /// `None`, only if it does not exist yet. `Ok(false)` means the condition failed (someone
    /// else wrote it meanwhile) and nothing was written.
    pub async fn put_if(
        &self,
        name: &str,
        content: Bytes,
        info: &BlobInfo,
        etag: Option<&str>,
    ) -> Result<bool, ArchiveError> {
        self.ensure_container().await?;
        let blob = self.storage.blob(&self.container, name)?;
        let mut options = BlobClientUploadOptions {
            blob_content_type: Some(info.content_type.clone()),
            metadata: Some(info.metadata.clone()),
            ..Default::default()
        };
        match etag {
            Some(etag) => options.if_match = Some(etag.into()),
            None => options.if_none_match = Some("*".into()),
        }
        match blob.upload(content.into(), Some(options)).await {
            Ok(_) => Ok(true),
            // 412 for a changed ETag; 409 (BlobAlreadyExists) for `If-None-Match: *`.
            Err(e)
                if matches!(
                    e.http_status(),
                    Some(StatusCode::PreconditionFailed | StatusCode::Conflict)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The manifest of an instance, if it has been archived.
    pub async fn manifest(&self, paths: &InstancePaths) -> Result<Option<Manifest>, ArchiveError> {
        let name = paths.manifest();
        let Some(bytes) = self.read_small(&name).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ArchiveError::BadManifest {
                blob: name,
                detail: e.to_string(),
            })
    }

    /// Writes the manifest with metadata [`meta::ELEMENTS`] = `elements`, the [`fingerprint`] of
    /// the element versions a later check must find current, and [`meta::HASHES`] = `hashes`,
    /// the [`content_fingerprint`] of the SHA-256s it records for them.
    pub async fn write_manifest(
        &self,
        paths: &InstancePaths,
        manifest: &Manifest,
        elements: &str,
        hashes: &str,
    ) -> Result<(), ArchiveError> {
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
        let info = BlobInfo {
            content_type: "application/json".into(),
            metadata: HashMap::from([
                (meta::ELEMENTS.to_string(), elements.to_string()),
                (meta::HASHES.to_string(), hashes.to_string()),
            ]),
        };
        self.put(&paths.manifest(), Bytes::from(json), &info).await
    }
}

/// Blob metadata values must be ASCII: non-ASCII (and `%`) is percent-encoded as UTF-8.
pub fn ascii_metadata_value(value: &str) -> String {
    // `utf8_percent_encode` always encodes non-ASCII bytes; controls and `%` are added so the
    // value stays a valid header and decodes back unambiguously.
    const ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    percent_encoding::utf8_percent_encode(value, ENCODE).to_string()
}

/// A lease held on a marker blob (see [`Archive::try_lease`]).
#[derive(Debug)]
pub struct Lease {
    blob: String,
    id: String,
}

/// What [`Archive::delete_if_unchanged`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionalDelete {
    Deleted,
    /// Nothing to delete (a retried step already did).
    AlreadyGone,
    /// The blob now holds other content; it was left in place.
    Changed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_ascii() {
        assert_eq!(ascii_metadata_value("report.pdf"), "report.pdf");
        assert_eq!(ascii_metadata_value("søknad.pdf"), "s%C3%B8knad.pdf");
        assert_eq!(ascii_metadata_value("100%.txt"), "100%25.txt");
        assert!(ascii_metadata_value("日本.txt").is_ascii());
    }
}

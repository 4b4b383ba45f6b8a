//! The blob archive: where each instance and its data elements are stored, and how.
//!
//! Layout (reference-compatible, in the archive container):
//! - `{org}/{app}/{guid}/{guid}` — the instance JSON, byte-for-byte as Altinn returned it;
//! - `{org}/{app}/{guid}/data/{dataId}` — each data element, with its content type and
//!   metadata `filename` (percent-encoded if not ASCII), `datatype`, `size`, `instanceid`;
//! - `{org}/{app}/{guid}/quarantine/{dataId}` — elements the virus scan found infected;
//! - `{org}/{app}/{guid}/manifest.json` — written last, only after every element is stored
//!   and verified; its presence means "archived".
//!
//! Elements are streamed in blocks ([`BLOCK_SIZE`]): memory stays bounded whatever the element
//! size, and nothing becomes visible until the block list is committed — which happens only
//! after the byte count matched the element's `size`. A truncated download therefore never
//! leaves a blob that looks complete.
//!
//! While one block is being staged the next one is already downloading (at most one block in
//! flight per element, so two buffers). Block buffers come out of a process-wide budget
//! ([`BUFFER_BUDGET`]): an element reserves its buffers before its download is opened, so however
//! many invocations and elements run at once, their blocks never exceed the budget — the rest
//! wait their turn without holding a connection open.

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::http::{RequestContent, StatusCode};
use azure_storage_blob::models::{
    BlobClientGetPropertiesResultHeaders, BlobClientUploadOptions,
    BlockBlobClientCommitBlockListOptions, BlockLookupList,
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::domain::InstanceRef;
use crate::storage::StorageEndpoint;

/// Block size for streamed uploads: large enough for few round trips, small enough that a
/// couple of dozen concurrent invocations stay well inside a Function instance's memory.
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;

/// Memory for block buffers shared by every element upload of an [`Archive`] (one per process):
/// four elements staging and downloading at once (2 × [`BLOCK_SIZE`] each), or many more small
/// ones. Keeps the process well inside 64 MiB with 24 concurrent invocations.
pub const BUFFER_BUDGET: usize = 32 * 1024 * 1024;

/// Budget permits are KiB (a semaphore counts in `u32` per acquisition).
const BUDGET_UNIT: usize = 1024;

/// Buffer memory reserved out of [`BUFFER_BUDGET`] for one element upload; returned on drop.
pub struct BufferReservation {
    _permit: OwnedSemaphorePermit,
    /// Whether two block buffers were reserved (download the next block while staging one).
    pipelined: bool,
}

/// Why an archive operation failed. All of these are worth a retry: storage hiccups pass, and
/// a short or broken download is fetched again from the start.
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
    #[error("{blob}: expected {expected} bytes, received {received}")]
    SizeMismatch {
        blob: String,
        expected: u64,
        received: u64,
    },
    #[error("manifest {blob} is unreadable: {detail}")]
    BadManifest { blob: String, detail: String },
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

/// The record that an instance is archived: one entry per data element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub instance_id: String,
    pub app_id: String,
    /// The instance's `lastChanged` when it was archived (information: later metadata-only
    /// changes, such as the confirmation itself, do not make the archive stale).
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
    pub blob_name: String,
    /// The original file name (UTF-8; blob metadata holds it percent-encoded).
    pub filename: Option<String>,
    #[serde(default)]
    pub quarantined: bool,
    #[serde(default)]
    pub hard_deleted: bool,
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
            buffers: Arc::new(Semaphore::new(BUFFER_BUDGET / BUDGET_UNIT)),
        }
    }

    /// Waits until the buffers to stream an element of `expected` bytes fit in the budget:
    /// one buffer of its size when it fits in a block, two blocks otherwise. Reserve before
    /// opening the download, so a waiting element holds no connection.
    pub async fn reserve_buffers(&self, expected: u64) -> BufferReservation {
        let pipelined = expected > BLOCK_SIZE as u64;
        let bytes = if pipelined {
            2 * BLOCK_SIZE
        } else {
            expected as usize
        };
        let units = bytes.div_ceil(BUDGET_UNIT).max(1) as u32;
        let permit = self
            .buffers
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the buffer budget is never closed");
        BufferReservation {
            _permit: permit,
            pipelined,
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

    /// Streams `body` into blob `name`, committing only when exactly `expected` bytes arrived,
    /// then checks the committed size. Returns the number of bytes stored. `buffers` is the
    /// element's share of the budget ([`Archive::reserve_buffers`] for `expected`), taken before
    /// `body` was opened.
    pub async fn upload_stream<S, E>(
        &self,
        name: &str,
        body: S,
        expected: u64,
        info: &BlobInfo,
        buffers: BufferReservation,
    ) -> Result<u64, ArchiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.ensure_container().await?;
        let mut body = body;
        let mut blocks = BlockSplitter::new(BLOCK_SIZE, expected);
        let mut received: u64 = 0;
        // Ids of every block handed to `stage`, in order; the list is committed only after all
        // of them were staged.
        let mut staged: Vec<Vec<u8>> = Vec::new();
        let block_blob = self
            .storage
            .blob(&self.container, name)?
            .block_blob_client();
        let stage = |block: Bytes, id: Vec<u8>| {
            let block_blob = &block_blob;
            async move {
                block_blob
                    .stage_block(&id, block.len() as u64, block.into(), None)
                    .await?;
                Ok::<_, ArchiveError>(())
            }
        };
        // The block being staged while the next one downloads (pipelined uploads only).
        let mut in_flight = None;

        loop {
            tokio::select! {
                biased;
                // Finish staging first: its buffer is freed as soon as the service has it.
                result = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    result?;
                }
                chunk = body.next() => {
                    let Some(chunk) = chunk else { break };
                    let chunk = chunk.map_err(|e| ArchiveError::Source {
                        blob: name.to_string(),
                        received,
                        detail: e.to_string(),
                    })?;
                    received += chunk.len() as u64;
                    if received > expected {
                        return Err(ArchiveError::SizeMismatch {
                            blob: name.to_string(),
                            expected,
                            received,
                        });
                    }
                    for block in blocks.push(chunk) {
                        // At most one block in flight: wait for the previous one first.
                        if let Some(previous) = in_flight.take() {
                            previous.await?;
                        }
                        let id = block_id(staged.len());
                        staged.push(id.clone());
                        let staging = Box::pin(stage(block, id));
                        if buffers.pipelined {
                            in_flight = Some(staging);
                        } else {
                            staging.await?;
                        }
                    }
                }
            }
        }
        if let Some(previous) = in_flight.take() {
            previous.await?;
        }
        if received != expected {
            return Err(ArchiveError::SizeMismatch {
                blob: name.to_string(),
                expected,
                received,
            });
        }
        let rest = blocks.finish();
        if staged.is_empty() {
            // Fits in one request: a single Put Blob is cheaper than stage + commit.
            self.put(name, rest, info).await?;
        } else {
            if !rest.is_empty() {
                let id = block_id(staged.len());
                staged.push(id.clone());
                stage(rest, id).await?;
            }
            let list = BlockLookupList {
                latest: Some(staged),
                ..Default::default()
            };
            let options = BlockBlobClientCommitBlockListOptions {
                blob_content_type: Some(info.content_type.clone()),
                metadata: Some(info.metadata.clone()),
                ..Default::default()
            };
            block_blob
                .commit_block_list(RequestContent::try_from(list)?, Some(options))
                .await?;
        }

        match self.blob_size(name).await? {
            Some(size) if size == expected => Ok(size),
            other => Err(ArchiveError::SizeMismatch {
                blob: name.to_string(),
                expected,
                received: other.unwrap_or(0),
            }),
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

    pub async fn write_manifest(
        &self,
        paths: &InstancePaths,
        manifest: &Manifest,
    ) -> Result<(), ArchiveError> {
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
        let info = BlobInfo {
            content_type: "application/json".into(),
            metadata: HashMap::new(),
        };
        self.put(&paths.manifest(), Bytes::from(json), &info).await
    }
}

/// Cuts a stream of arbitrary chunks into blocks of exactly `size` bytes (the last one
/// shorter), holding at most one block in memory.
///
/// Each block's buffer is allocated once at its final size (never grown by doubling and
/// copying), and reclaimed for the next block when the previous one has been dropped.
struct BlockSplitter {
    size: usize,
    /// Bytes not yet cut into a block (sizes the last buffer exactly).
    remaining: u64,
    buffer: BytesMut,
}

impl BlockSplitter {
    fn new(size: usize, expected: u64) -> Self {
        BlockSplitter {
            size,
            remaining: expected,
            buffer: BytesMut::new(),
        }
    }

    /// Takes a chunk; returns the blocks it completed.
    fn push(&mut self, mut chunk: Bytes) -> Vec<Bytes> {
        let mut full = Vec::new();
        while !chunk.is_empty() {
            if self.buffer.is_empty() {
                let want = (self.size as u64).min(self.remaining.max(1)) as usize;
                self.buffer.reserve(want);
            }
            let take = (self.size - self.buffer.len()).min(chunk.len());
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == self.size {
                self.remaining = self.remaining.saturating_sub(self.size as u64);
                full.push(self.buffer.split().freeze());
            }
        }
        full
    }

    /// The bytes after the last full block.
    fn finish(self) -> Bytes {
        self.buffer.freeze()
    }
}

/// Fixed-width block ids: Azure requires every id in a blob to have the same length.
fn block_id(index: usize) -> Vec<u8> {
    format!("block-{index:08}").into_bytes()
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
    }

    #[test]
    fn metadata_values_are_ascii() {
        assert_eq!(ascii_metadata_value("report.pdf"), "report.pdf");
        assert_eq!(ascii_metadata_value("søknad.pdf"), "s%C3%B8knad.pdf");
        assert_eq!(ascii_metadata_value("100%.txt"), "100%25.txt");
        assert!(ascii_metadata_value("日本.txt").is_ascii());
    }

    #[test]
    fn blocks_are_exact_whatever_the_chunking() {
        for (total, chunk) in [
            (0usize, 7usize),
            (10, 3),
            (16, 4),
            (17, 16),
            (33, 5),
            (32, 32),
            (100, 1),
            (64, 100),
        ] {
            let data: Vec<u8> = (0..total).map(|i| i as u8).collect();
            let mut splitter = BlockSplitter::new(16, total as u64);
            let mut out: Vec<Bytes> = Vec::new();
            for piece in data.chunks(chunk.max(1)) {
                out.extend(splitter.push(Bytes::copy_from_slice(piece)));
            }
            assert!(
                out.iter().all(|b| b.len() == 16),
                "full blocks only: total {total} chunk {chunk}"
            );
            let rest = splitter.finish();
            assert!(rest.len() < 16);
            let joined: Vec<u8> = out
                .iter()
                .flat_map(|b| b.to_vec())
                .chain(rest.to_vec())
                .collect();
            assert_eq!(joined, data, "total {total} chunk {chunk}");
        }
    }

    #[test]
    fn block_ids_have_equal_length() {
        assert_eq!(block_id(0).len(), block_id(99_999_999).len());
    }
}

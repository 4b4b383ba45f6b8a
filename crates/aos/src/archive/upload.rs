//! Streaming an element into a block blob: bounded memory, nothing visible before the byte
//! count is right, the SHA-256 computed on the way.
//!
//! Elements are streamed in blocks ([`BLOCK_SIZE`]): memory stays bounded whatever the element
//! size, and nothing becomes visible until the block list is committed — which happens only
//! after the byte count matched the element's `size`. A truncated download therefore never
//! leaves a blob that looks complete. An element that fits in one block is written with a
//! single Put Blob from a buffer of its own size.
//!
//! While one block is being staged the next one is already downloading (at most one block in
//! flight per element, so two buffers). Block buffers come out of a process-wide budget
//! ([`BUFFER_BUDGET`]): an element reserves its buffers before its download is opened, so however
//! many invocations and elements run at once, their blocks never exceed the budget — the rest
//! wait their turn without holding a connection open.

use azure_core::http::RequestContent;
use azure_storage_blob::models::{BlockBlobClientCommitBlockListOptions, BlockLookupList};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;

use super::layout::meta;
use super::{Archive, ArchiveError, BlobInfo};

/// Block size for streamed uploads: large enough for few round trips, small enough that a
/// couple of dozen concurrent invocations stay well inside a Function instance's memory.
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;

/// Memory for block buffers shared by every element upload of an [`Archive`] (one per process):
/// four elements staging and downloading at once (2 × [`BLOCK_SIZE`] each), or many more small
/// ones. Keeps the process well inside 64 MiB with 24 concurrent invocations.
pub const BUFFER_BUDGET: usize = 32 * 1024 * 1024;

/// Budget permits are KiB (a semaphore counts in `u32` per acquisition).
pub(super) const BUDGET_UNIT: usize = 1024;

/// Buffer memory reserved out of [`BUFFER_BUDGET`] for one element upload; returned on drop.
pub struct BufferReservation {
    _permit: OwnedSemaphorePermit,
    /// Whether two block buffers were reserved (download the next block while staging one).
    pipelined: bool,
}

/// What [`Archive::upload_stream`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBytes {
    pub bytes: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

impl Archive {
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

    /// Streams `body` into blob `name`, committing only when exactly `expected` bytes arrived.
    /// The SHA-256 of the bytes is computed on the way (no second read) and stored with them as
    /// metadata [`meta::SHA256`]; it is returned with the byte count. `buffers` is the element's
    /// share of the budget ([`Archive::reserve_buffers`] for `expected`), taken before `body`
    /// was opened.
    ///
    /// No read-back after the write: the service acknowledged a write of exactly the counted
    /// bytes, and every confirmation checks the stored size and metadata again with one
    /// listing of the instance before Altinn is told anything.
    pub async fn upload_stream<S, E>(
        &self,
        name: &str,
        body: S,
        expected: u64,
        info: &BlobInfo,
        buffers: BufferReservation,
    ) -> Result<StoredBytes, ArchiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.ensure_container().await?;
        let mut body = body;
        let mut blocks = BlockSplitter::new(BLOCK_SIZE, expected);
        let mut received: u64 = 0;
        let mut hasher = Sha256::new();
        // Ids of every block handed to `stage`, in order; the list is committed only after all
        // of them were staged.
        let mut staged: Vec<Vec<u8>> = Vec::new();
        // Block ids of this upload only: two uploads of the same blob at once (two replicas,
        // two events for one instance) would otherwise stage blocks under the same ids, and
        // each commit would take whichever was staged last — a blob mixing both.
        let upload = uuid::Uuid::new_v4();
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
                    hasher.update(&chunk);
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
                        let id = block_id(upload, staged.len());
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
        let sha256 = format!("{:x}", hasher.finalize());
        let mut info = info.clone();
        info.metadata
            .insert(meta::SHA256.to_string(), sha256.clone());
        let info = &info;
        let rest = blocks.finish();
        if staged.is_empty() {
            // Fits in one request: a single Put Blob is cheaper than stage + commit.
            self.put(name, rest, info).await?;
        } else {
            if !rest.is_empty() {
                let id = block_id(upload, staged.len());
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

        Ok(StoredBytes {
            bytes: received,
            sha256,
        })
    }
}

/// Cuts a stream of arbitrary chunks into blocks of exactly `size` bytes, holding at most one
/// block in memory. The last block — shorter, or full when the element is a whole number of
/// blocks — is never emitted but kept for [`BlockSplitter::finish`]: the caller writes it with
/// the final request, so an element of exactly one block (4 MiB) is one Put Blob rather than a
/// staged block plus a commit (half the requests, and the commit is the dearer one).
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
            // A full block is emitted only when more bytes are expected after it (or arrive
            // anyway: more than expected is the caller's error to report, never a loop here).
            if self.buffer.len() == self.size
                && (self.remaining > self.size as u64 || !chunk.is_empty())
            {
                self.remaining = self.remaining.saturating_sub(self.size as u64);
                full.push(self.buffer.split().freeze());
            }
        }
        full
    }

    /// The last block: the bytes after the blocks emitted (a whole block when the element is a
    /// whole number of blocks).
    fn finish(self) -> Bytes {
        self.buffer.freeze()
    }
}

/// Fixed-width block ids, unique to one upload: Azure requires every id in a blob to have the
/// same length, and keeps one uncommitted block per id.
fn block_id(upload: uuid::Uuid, index: usize) -> Vec<u8> {
    format!("{}-{index:08}", upload.simple()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            // The last block is always the rest, full or not: one request can write it, and
            // an element of exactly one block is a single Put Blob.
            let last = if total == 0 { 0 } else { (total - 1) % 16 + 1 };
            assert_eq!(rest.len(), last, "total {total} chunk {chunk}");
            assert_eq!(
                out.len(),
                total.saturating_sub(1) / 16,
                "total {total} chunk {chunk}"
            );
            let joined: Vec<u8> = out
                .iter()
                .flat_map(|b| b.to_vec())
                .chain(rest.to_vec())
                .collect();
            assert_eq!(joined, data, "total {total} chunk {chunk}");
        }
    }

    #[test]
    fn more_bytes_than_expected_never_stall_the_splitter() {
        let mut splitter = BlockSplitter::new(16, 16);
        let out = splitter.push(Bytes::from(vec![1u8; 40]));
        assert_eq!(out.len(), 2, "full blocks handed on");
        assert_eq!(splitter.finish().len(), 8);
    }

    #[test]
    fn block_ids_have_equal_length_and_differ_between_uploads() {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert_eq!(block_id(a, 0).len(), block_id(b, 99_999_999).len());
        assert_ne!(block_id(a, 0), block_id(b, 0));
    }
}

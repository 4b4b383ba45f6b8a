//! The minimal pipeline (issue 18's second baseline): the product's architecture — a webhook's
//! message on an inbound queue, an archiving step, a message on a confirmation queue, a
//! confirming step — with the fewest requests the request budget allows, issued with the same
//! SDK by the bench itself, no product.
//!
//! Per instance: 1 inbound queue put; the archiving step gets its message (in batches, as the
//! host), reads the instance (1 instance GET), copies each element (N data GETs, N writes: one
//! Put Blob up to the block size, blocks and a commit above), writes the instance JSON and a
//! manifest, puts the confirmation message and deletes its own; the confirming step gets its
//! message, reads the instance again (the 2nd instance GET: it confirms only what Altinn has
//! now), lists the instance's folder once, checks every element is there with its size, calls
//! complete and deletes its message. That is 2N + 7 storage and Altinn requests plus the six
//! queue operations (put, get, delete on each queue; gets shared by a batch).
//!
//! Queue traffic is included because the product pays it too: under the Functions host harness
//! the host's pumps put, get and delete on Azurite for both queues, with the same message
//! (the event, base64 as `host.json` says). What the minimal pipeline leaves out is the
//! product's own work: the webhook's HTTP hop (it puts the message itself), a listing before
//! archiving (resumability), metadata and hashes, the manifest's fingerprints and the checks
//! against them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use altinn_aos::archive::BLOCK_SIZE;
use altinn_aos::storage::StorageEndpoint;
use anyhow::{Context, bail};
use azure_core::http::RequestContent;
use azure_storage_blob::models::{BlobContainerClientListBlobsOptions, BlockLookupList};
use azure_storage_queue::models::ReceivedMessage;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use aos_testkit::app::MessageEncoding;
use aos_testkit::invocation::decode_message;
use aos_testkit::queue::Queues;
use aos_testkit::world::{ARCHIVE_CONTAINER, TOKEN};

/// The minimal pipeline's own queues (the host harness polls the product's).
const INBOUND: &str = "minimal-inbound";
const CONFIRMATION: &str = "minimal-confirmation";
/// Messages received at once (host.json `batchSize`) and run at once (+ `newBatchThreshold`).
const BATCH: usize = 16;
const IN_FLIGHT: usize = BATCH + BATCH / 2;
/// The host harness's idle poll interval.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Visibility timeout of a received message.
const LEASE_SECS: i32 = 30;
/// Elements of one instance copied at once (the product's `ELEMENT_CONCURRENCY`).
const ELEMENTS_AT_ONCE: usize = altinn_aos::ELEMENT_CONCURRENCY;
/// Events put on the inbound queue at once (the bench posts to the webhook 16 at a time).
const PUT_CONCURRENCY: usize = 16;

/// The minimal pipeline against one storage account (Azurite or the counting proxy) and the
/// simulator at `base`.
pub struct Minimal {
    http: reqwest::Client,
    blobs: StorageEndpoint,
    queues: Queues,
    base: String,
}

/// Two pumps (archiving, confirming) running until dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tasks.abort_all();
    }
}

impl Minimal {
    /// `connection_string` names the blob and queue endpoints; `base` is the simulator's URL.
    pub fn new(connection_string: &str, base: &str) -> anyhow::Result<Arc<Minimal>> {
        let blobs = StorageEndpoint::blobs_from_connection_string(connection_string)
            .map_err(|e| anyhow::anyhow!("connection string: {e}"))?;
        Ok(Arc::new(Minimal {
            http: reqwest::Client::builder().no_proxy().build()?,
            blobs,
            queues: Queues::new(connection_string)?,
            base: base.to_string(),
        }))
    }

    /// Creates the queues (once, before anything is measured).
    pub async fn prepare(&self) -> anyhow::Result<()> {
        self.queues.ensure(INBOUND).await?;
        self.queues.ensure(CONFIRMATION).await
    }

    /// Starts the two steps' pumps; they run until the result is dropped.
    pub fn start(self: &Arc<Self>) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        tasks.spawn(pump(self.clone(), INBOUND, stop.clone()));
        tasks.spawn(pump(self.clone(), CONFIRMATION, stop.clone()));
        Running { stop, tasks }
    }

    /// Waits until both queues are empty, visible or not: every step finished and deleted its
    /// message, so nothing reappears in the next run.
    pub async fn settle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut queued = 0;
            for queue in [INBOUND, CONFIRMATION] {
                queued += self.queues.approximate_count(queue).await?;
            }
            if queued == 0 {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("the minimal pipeline left {queued} message(s) queued");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The webhook's part: each event put on the inbound queue.
    pub async fn receive(&self, events: &[Value]) -> anyhow::Result<()> {
        let puts: Vec<_> = events
            .iter()
            .map(|event| async move { self.put(INBOUND, event.to_string().as_bytes()).await })
            .collect();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(puts)
            .buffer_unordered(PUT_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn put(&self, queue: &str, message: &[u8]) -> anyhow::Result<()> {
        self.queues
            .send(queue, message, MessageEncoding::Base64)
            .await
    }

    /// One message of `queue` through its step; deleted when the step succeeded.
    async fn handle(&self, queue: &str, message: ReceivedMessage) -> anyhow::Result<()> {
        let (Some(id), Some(receipt), Some(text)) = (
            message.message_id,
            message.pop_receipt,
            message.message_text,
        ) else {
            bail!("a message without id, pop receipt or text");
        };
        let body = decode_message(&text, MessageEncoding::Base64).context("base64")?;
        let event: Value = serde_json::from_slice(&body)?;
        let instance = event["resourceinstance"]
            .as_str()
            .context("resourceinstance")?
            .to_string();
        if queue == INBOUND {
            self.archive(&instance).await?;
            self.put(CONFIRMATION, &body).await?;
        } else {
            self.confirm(&instance).await?;
        }
        self.queues.delete(queue, &id, &receipt).await
    }

    fn instance_url(&self, instance: &str) -> String {
        format!("{}storage/api/v1/instances/{instance}", self.base)
    }

    async fn read_instance(&self, instance: &str) -> anyhow::Result<(Bytes, Value)> {
        let raw = self
            .http
            .get(self.instance_url(instance))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let json = serde_json::from_slice(&raw)?;
        Ok((raw, json))
    }

    /// The archiving step: instance read, elements copied, instance JSON, manifest.
    async fn archive(&self, instance: &str) -> anyhow::Result<()> {
        let (raw, json) = self.read_instance(instance).await?;
        let guid = guid(instance)?;
        let elements = elements(&json)?;
        let url = self.instance_url(instance);
        // Futures collected first (as the product does): a closure in the stream would make the
        // spawned step's future not `Send` for every lifetime.
        let copies: Vec<_> = elements
            .iter()
            .map(|(id, size)| {
                copy(
                    &self.http,
                    &self.blobs,
                    format!("{url}/data/{id}"),
                    format!("minimal/{guid}/data/{id}"),
                    *size,
                )
            })
            .collect();
        let copies: Vec<anyhow::Result<()>> = futures::stream::iter(copies)
            .buffer_unordered(ELEMENTS_AT_ONCE)
            .collect()
            .await;
        copies.into_iter().collect::<anyhow::Result<()>>()?;
        self.blobs
            .blob(ARCHIVE_CONTAINER, &format!("minimal/{guid}/{guid}"))?
            .upload(raw.into(), None)
            .await?;
        let manifest = serde_json::to_vec(&elements)?;
        self.blobs
            .blob(ARCHIVE_CONTAINER, &format!("minimal/{guid}/manifest.json"))?
            .upload(Bytes::from(manifest).into(), None)
            .await?;
        Ok(())
    }

    /// The confirming step: instance read, one listing that must show every element with its
    /// size and the manifest, then complete.
    async fn confirm(&self, instance: &str) -> anyhow::Result<()> {
        let (_, json) = self.read_instance(instance).await?;
        let guid = guid(instance)?;
        let prefix = format!("minimal/{guid}/");
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.clone()),
            ..Default::default()
        };
        let mut pages = self
            .blobs
            .container(ARCHIVE_CONTAINER)?
            .list_blobs(Some(options))?
            .into_pages();
        let mut listed = std::collections::HashMap::new();
        while let Some(page) = pages.try_next().await? {
            for item in page.into_model()?.blob_items {
                let size = item.properties.and_then(|p| p.content_length);
                if let Some(name) = item.name {
                    listed.insert(name, size.unwrap_or(0));
                }
            }
        }
        if !listed.contains_key(&format!("{prefix}manifest.json")) {
            bail!("{instance}: no manifest");
        }
        for (id, size) in elements(&json)? {
            if listed.get(&format!("{prefix}data/{id}")) != Some(&size) {
                bail!("{instance}: element {id} missing or not {size} bytes");
            }
        }
        self.http
            .post(format!("{}/complete", self.instance_url(instance)))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

/// One step's queue pump, as the host harness runs it: receive up to [`BATCH`] messages while
/// fewer than [`IN_FLIGHT`] run, sleep [`POLL_INTERVAL`] when the queue is empty. A failed
/// message is left to reappear (none is expected: the bench fails on a timeout instead).
async fn pump(minimal: Arc<Minimal>, queue: &'static str, stop: Arc<AtomicBool>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut running = JoinSet::new();
    while !stop.load(Ordering::SeqCst) {
        while running.try_join_next().is_some() {}
        let free = permits.available_permits().min(BATCH);
        if free == 0 {
            drop(permits.clone().acquire_owned().await);
            continue;
        }
        match minimal.queues.receive(queue, free as i32, LEASE_SECS).await {
            Ok(messages) if messages.is_empty() => tokio::time::sleep(POLL_INTERVAL).await,
            Ok(messages) => {
                for message in messages {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let minimal = minimal.clone();
                    running.spawn(async move {
                        if let Err(e) = minimal.handle(queue, message).await {
                            eprintln!("minimal pipeline, {queue}: {e:#}");
                        }
                        drop(permit);
                    });
                }
            }
            Err(e) => {
                eprintln!("minimal pipeline, receiving from {queue}: {e:#}");
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
}

/// The guid of `party/guid`.
fn guid(instance: &str) -> anyhow::Result<&str> {
    instance
        .rsplit_once('/')
        .map(|(_, guid)| guid)
        .context("an instance id is party/guid")
}

/// `(id, size)` of every data element of an instance JSON.
fn elements(instance: &Value) -> anyhow::Result<Vec<(String, u64)>> {
    instance["data"]
        .as_array()
        .context("the instance has no data array")?
        .iter()
        .map(|e| {
            Ok((
                e["id"].as_str().context("element id")?.to_string(),
                e["size"].as_u64().context("element size")?,
            ))
        })
        .collect()
}

/// Streams one element from the simulator into a block blob: one Put Blob from a buffer of the
/// element's size when it fits in a block (a block of exactly [`BLOCK_SIZE`] included);
/// otherwise blocks of [`BLOCK_SIZE`] staged, then the block list committed. Also the raw-copy
/// baseline's whole work per element.
pub async fn copy(
    http: &reqwest::Client,
    blobs: &StorageEndpoint,
    url: String,
    name: String,
    size: u64,
) -> anyhow::Result<()> {
    let response = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let blob = blobs.blob(ARCHIVE_CONTAINER, &name)?;
    let block_blob = blob.block_blob_client();
    let mut buffer = BytesMut::with_capacity(BLOCK_SIZE.min(size as usize).max(1));
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk?;
        received += chunk.len() as u64;
        while !chunk.is_empty() {
            let take = (BLOCK_SIZE - buffer.len()).min(chunk.len());
            buffer.extend_from_slice(&chunk.split_to(take));
            // The last block waits for the final request, full or not.
            let staged_bytes = (ids.len() * BLOCK_SIZE) as u64;
            let more = staged_bytes + (BLOCK_SIZE as u64) < size || !chunk.is_empty();
            if buffer.len() == BLOCK_SIZE && more {
                let block = buffer.split().freeze();
                let id = format!("block-{:08}", ids.len()).into_bytes();
                block_blob
                    .stage_block(&id, block.len() as u64, block.into(), None)
                    .await?;
                ids.push(id);
                buffer.reserve(BLOCK_SIZE);
            }
        }
    }
    if received != size {
        bail!("{url}: {received} bytes, expected {size}");
    }
    if ids.is_empty() {
        blob.upload(buffer.freeze().into(), None).await?;
    } else {
        if !buffer.is_empty() {
            let block = buffer.freeze();
            let id = format!("block-{:08}", ids.len()).into_bytes();
            block_blob
                .stage_block(&id, block.len() as u64, block.into(), None)
                .await?;
            ids.push(id);
        }
        let list = BlockLookupList {
            latest: Some(ids),
            ..Default::default()
        };
        block_blob
            .commit_block_list(RequestContent::try_from(list)?, None)
            .await?;
    }
    Ok(())
}

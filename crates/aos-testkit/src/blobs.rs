//! Blob operations the fake host's blob trigger and the tests need, on the app's own
//! `StorageEndpoint` (same authentication as the app) with SDK retries off, like `queue.rs`.

use altinn_aos::storage::StorageEndpoint;
use anyhow::Context;
use azure_core::http::{RetryOptions, StatusCode};
use azure_storage_blob::models::BlobClientUploadOptions;
use futures::TryStreamExt;
use time::OffsetDateTime;

/// A blob as a container listing shows it.
#[derive(Debug, Clone)]
pub struct ListedBlob {
    pub name: String,
    pub etag: String,
    pub length: u64,
    pub content_type: Option<String>,
    pub last_modified: Option<OffsetDateTime>,
    pub created: Option<OffsetDateTime>,
}

/// Blob access for one storage account.
pub struct Blobs {
    endpoint: StorageEndpoint,
}

impl Blobs {
    pub fn new(connection_string: &str) -> anyhow::Result<Blobs> {
        let endpoint = StorageEndpoint::blobs_from_connection_string(connection_string)
            .map_err(|e| anyhow::anyhow!("blob connection string: {e}"))?
            .with_retry(RetryOptions::none());
        Ok(Blobs { endpoint })
    }

    /// `{endpoint}{container}/{name}` without credentials: the host's `Uri` binding data.
    pub fn uri(&self, container: &str, name: &str) -> String {
        format!("{}{container}/{name}", self.endpoint.endpoint())
    }

    /// Every blob in `container` (empty when the container does not exist).
    pub async fn list(&self, container: &str) -> anyhow::Result<Vec<ListedBlob>> {
        let client = self.endpoint.container(container)?;
        let mut pages = client.list_blobs(None)?.into_pages();
        let mut listed = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page.into_model()?,
                Ok(None) => break,
                Err(e) if e.http_status() == Some(StatusCode::NotFound) => break,
                Err(e) => return Err(e).with_context(|| format!("listing `{container}`")),
            };
            for item in page.blob_items {
                let Some(name) = item.name else { continue };
                let props = item.properties.unwrap_or_default();
                listed.push(ListedBlob {
                    name,
                    etag: props.etag.map(|e| e.to_string()).unwrap_or_default(),
                    length: props.content_length.unwrap_or(0),
                    content_type: props.content_type,
                    last_modified: props.last_modified,
                    created: props.creation_time,
                });
            }
        }
        Ok(listed)
    }

    /// The blob's bytes, or `None` when it does not exist.
    pub async fn read(&self, container: &str, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let blob = self.endpoint.blob(container, name)?;
        match blob.download(None).await {
            Ok(result) => Ok(Some(result.body.collect().await?.to_vec())),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {container}/{name}")),
        }
    }

    /// Writes (or replaces) a blob, creating the container when needed.
    pub async fn write(&self, container: &str, name: &str, content: &[u8]) -> anyhow::Result<()> {
        match self.endpoint.container(container)?.create(None).await {
            Err(e) if e.http_status() != Some(StatusCode::Conflict) => {
                return Err(e).with_context(|| format!("creating `{container}`"));
            }
            _ => {}
        }
        let options = BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            ..Default::default()
        };
        self.endpoint
            .blob(container, name)?
            .upload(bytes::Bytes::copy_from_slice(content).into(), Some(options))
            .await
            .with_context(|| format!("writing {container}/{name}"))?;
        Ok(())
    }

    /// Takes an infinite lease on a blob: until it is broken, nobody else can write or delete
    /// it (a storage failure for exactly that blob). Returns the lease id.
    pub async fn lease_forever(&self, container: &str, name: &str) -> anyhow::Result<String> {
        let response = self
            .endpoint
            .blob(container, name)?
            .acquire_lease(-1, None)
            .await
            .with_context(|| format!("leasing {container}/{name}"))?;
        use azure_storage_blob::models::BlobClientAcquireLeaseResultHeaders;
        response
            .lease_id()?
            .context("the lease response names no lease id")
    }

    /// Ends a lease at once.
    pub async fn break_lease(&self, container: &str, name: &str) -> anyhow::Result<()> {
        let options = azure_storage_blob::models::BlobClientBreakLeaseOptions {
            break_period: Some(0),
            ..Default::default()
        };
        self.endpoint
            .blob(container, name)?
            .break_lease(Some(options))
            .await
            .with_context(|| format!("breaking the lease on {container}/{name}"))?;
        Ok(())
    }
}

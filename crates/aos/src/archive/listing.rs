//! One listing of an instance's folder: every blob there with its size and metadata.
//!
//! This is how the archive is checked (design §2.6): a manifest is trusted only when one
//! listing shows every element blob with its size and version metadata, so a blob deleted or
//! truncated after the manifest was written is noticed, and one request replaces a read of the
//! manifest and a HEAD per element.

use std::collections::HashMap;

use azure_core::http::StatusCode;
use azure_storage_blob::models::{BlobContainerClientListBlobsOptions, ListBlobsIncludeItem};
use futures::TryStreamExt;

use super::layout::{InstancePaths, meta};
use super::{Archive, ArchiveError};

/// A committed blob as a listing shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredBlob {
    pub size: u64,
    pub last_modified: Option<time::OffsetDateTime>,
    /// Metadata, keys in lower case (the service keeps the case they were written in; this
    /// product writes lower case, and a hand-written key in another case still matches).
    pub metadata: HashMap<String, String>,
}

impl StoredBlob {
    /// A metadata value by its (lower-case) key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The SHA-256 this product recorded when it wrote the bytes, if it is well-formed.
    pub fn sha256(&self) -> Option<&str> {
        self.meta(meta::SHA256)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// Every blob under one instance's prefix, by full name.
#[derive(Clone, Debug, Default)]
pub struct InstanceListing {
    blobs: HashMap<String, StoredBlob>,
}

impl InstanceListing {
    /// The blob called `name`, if the listing showed it.
    pub fn get(&self, name: &str) -> Option<&StoredBlob> {
        self.blobs.get(name)
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Builds a listing from `(name, blob)` pairs (tests of the checks above this layer).
    pub fn from_blobs(blobs: impl IntoIterator<Item = (String, StoredBlob)>) -> Self {
        InstanceListing {
            blobs: blobs.into_iter().collect(),
        }
    }
}

impl Archive {
    /// Lists the instance's folder once (with metadata). An absent container is an empty
    /// listing: nothing has been archived yet.
    pub async fn list_instance(
        &self,
        paths: &InstancePaths,
    ) -> Result<InstanceListing, ArchiveError> {
        Ok(InstanceListing {
            blobs: self.list(&paths.prefix()).await?.into_iter().collect(),
        })
    }

    /// Every committed blob whose name starts with `prefix`, with its metadata, following the
    /// listing's pages. An absent container lists nothing.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredBlob)>, ArchiveError> {
        let container = self.storage.container(&self.container)?;
        let options = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_string()),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        let mut pages = container.list_blobs(Some(options))?.into_pages();
        let mut blobs = Vec::new();
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page.into_model()?,
                Ok(None) => break,
                Err(e) if e.http_status() == Some(StatusCode::NotFound) => break,
                Err(e) => return Err(e.into()),
            };
            for item in page.blob_items {
                let Some(name) = item.name else { continue };
                let properties = item.properties.unwrap_or_default();
                let metadata = item
                    .metadata
                    .and_then(|m| m.values)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                blobs.push((
                    name,
                    StoredBlob {
                        size: properties.content_length.unwrap_or(0),
                        last_modified: properties.last_modified,
                        metadata,
                    },
                ));
            }
        }
        Ok(blobs)
    }
}

//! The domain steps: receive → process (archive) → feedback → confirm, and the subscription
//! files.
//!
//! Each step takes a [`CloudEvent`](crate::domain::CloudEvent) and returns an outcome or an
//! [`error::StepError`] that says whether a retry can help. The adapters (the Functions
//! handler, the standalone runtime) map outcomes to their own language: outputs and 2xx, or a
//! non-2xx so the message is retried.
//!
//! ## Layering
//!
//! Imports point down only:
//!
//! - the runtimes (`functions/`, `standalone/`) and the CLI use [`Pipeline`] and the steps;
//!   nothing here imports them;
//! - [`Pipeline`] (this file) is the wiring: it builds the clients and holds what every step
//!   needs; the steps (`receive`, `process`, `feedback`, `confirm`, `messages`, `reconcile`,
//!   `catchup`, [`subscription_files`]) are `impl Pipeline` blocks or types of their own.
//!   `subscription_files` lives here, not beside the pipeline, because `Pipeline` holds it and
//!   it fails with a `StepError`: as top-level modules the two would import each other;
//! - [`error`] is the bottom of the pipeline: it knows the clients' error types and nothing of
//!   the wiring, so a step needs only it for its error type;
//! - below the pipeline: [`crate::failures`] (the `aos-state` failure records: they store the
//!   kind's label and the error's text, and know nothing of steps), [`crate::holds`],
//!   [`crate::queue`],
//!   [`crate::archive`], [`crate::altinn`], [`crate::auth`], [`crate::storage`],
//!   [`crate::config`], [`crate::domain`].

pub mod catchup;
pub mod confirm;
pub mod error;
pub mod feedback;
pub mod freshness;
mod gauges;
pub mod handoff;
pub mod health;
pub mod identity;
pub mod messages;
pub mod process;
pub mod receive;
pub mod reconcile;
pub mod subscription_files;

use std::sync::Arc;

use crate::altinn::AltinnClient;
use crate::archive::Archive;
use crate::config::{Settings, SettingsError};
use crate::failures::{Failures, STATE_CONTAINER};
use crate::holds::Holds;
use crate::storage::StorageEndpoint;
use error::StepError;
use subscription_files::SubscriptionFiles;

/// The Functions host's default `maxDequeueCount`, and `aos run`'s.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// What every step needs: settings, the Altinn client and the archive. One per process.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: Arc<Settings>,
    pub altinn: AltinnClient,
    pub archive: Archive,
    /// Last-failure records in `aos-state`, for `aos poison list`.
    pub failures: Failures,
    /// Instances held out of reconciliation and catch-up after a permanent failure.
    pub holds: Holds,
    /// The downstream hand-off queue (`ArchivedQueueName`), when configured.
    pub handoff: Option<handoff::Handoff>,
    /// Attempts at a message before the runtime poisons it: the host's `maxDequeueCount`
    /// (`aos serve` reads it from `host.json`) or `aos run`'s; [`DEFAULT_MAX_ATTEMPTS`] until set.
    pub max_attempts: u32,
    /// The blob-triggered subscription functions' containers, in the trigger connection's
    /// account; the reason when that connection is not configured (only those two functions
    /// need it, so the rest of the app still starts).
    pub subscription_files: Result<SubscriptionFiles, String>,
}

impl Pipeline {
    /// Builds the clients. A local Maskinporten key file is loaded here: a bad one is a
    /// [`SettingsError`] naming the setting, so the process stops at start with one clear line.
    /// A Key Vault key is not read here but at the first grant, so an unreachable or not yet
    /// authorised vault fails only the steps that need a token, retryably, and the webhook
    /// serves regardless (`crate::auth::key_store`).
    pub async fn from_settings(settings: Settings) -> Result<Self, SettingsError> {
        let tokens =
            crate::auth::provider_from_settings(&settings.token, &settings.platform_base_url)
                .await?;
        let altinn = AltinnClient::new(
            settings.apps_base_url.clone(),
            settings.platform_base_url.clone(),
            tokens,
        );
        let blobs = StorageEndpoint::for_blobs(&settings.blob)?;
        let archive = Archive::new(blobs.clone(), settings.blob.container.clone());
        let state = Archive::new(blobs, STATE_CONTAINER);
        let failures = Failures::new(state.clone());
        let holds = Holds::new(state);
        let subscription_files = subscription_files(&settings, &altinn);
        let handoff = handoff::Handoff::from_settings(&settings)?;
        Ok(Pipeline {
            settings: Arc::new(settings),
            altinn,
            archive,
            failures,
            holds,
            handoff,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            subscription_files,
        })
    }
}

/// The subscription files' store on the trigger connection's blob service.
fn subscription_files(
    settings: &Settings,
    altinn: &AltinnClient,
) -> Result<SubscriptionFiles, String> {
    let connection = settings.queues.connection.as_ref().ok_or(
        "QueueStorageSettings__ConnectionString is not set (the blob triggers' connection)",
    )?;
    let blobs = StorageEndpoint::blobs_for_queue_connection(
        connection,
        settings.queues.blob_service_uri.as_ref(),
    )
    .map_err(|e| e.to_string())?;
    Ok(SubscriptionFiles::new(
        altinn.clone(),
        settings.apps_base_url.clone(),
        blobs,
        &settings.active_subscriptions_container,
    ))
}

impl Pipeline {
    /// Reads the instance from Storage and checks its metadata against `instance`: an anomaly
    /// is a permanent error, and nothing from such an instance is used.
    pub(crate) async fn read_checked(
        &self,
        instance: &crate::domain::InstanceRef,
    ) -> Result<
        (
            crate::altinn::client::FetchedInstance,
            Vec<identity::CheckedElement>,
        ),
        StepError,
    > {
        let fetched = self.altinn.get_instance(instance).await?;
        let elements = identity::check_instance(
            instance,
            &fetched.instance,
            &self.settings.platform_base_url,
        )
        .map_err(|anomaly| {
            StepError::permanent(anyhow::anyhow!(anomaly))
                .context(format!("instance {instance} is anomalous"))
        })?;
        Ok((fetched, elements))
    }
}

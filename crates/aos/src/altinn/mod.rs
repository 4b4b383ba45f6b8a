//! Talking to Altinn: the HTTP client for Storage and the app API, and the JSON model.

pub mod client;
pub mod model;
pub mod subscriptions;

pub use client::{AltinnClient, AltinnError};

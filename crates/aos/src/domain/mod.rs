//! Domain types: values that parse, so a value of the type is valid and nothing downstream
//! checks it again.
//!
//! The bottom layer: it imports nothing from the rest of the crate, and every other module may
//! use it. Parse errors are plain descriptions of the problem; the caller (settings, the
//! webhook, the reconciler) adds where the value came from.
//!
//! - `names.rs` — [`OrgName`], [`AppName`]: Altinn's naming rules, safe as URL and blob path
//!   segments.
//! - `event.rs` — [`CloudEvent`] as Altinn delivers it and the [`InstanceRef`] it names; every
//!   URL and blob path is built from an `InstanceRef`, never from raw event text.
//! - `base_url.rs` — [`BaseUrl`]: https (or loopback http) with exactly one trailing `/`.
//! - `secret.rs` — [`Secret`]: a value that `Debug` never shows (keys, passwords, tokens).
//! - `printable.rs` — [`Printable`]: outside text shown with line breaks, terminal controls and
//!   invisible characters escaped, for logs and printed lines.

mod base_url;
mod event;
mod names;
mod printable;
mod secret;

pub use base_url::BaseUrl;
pub use event::{
    CAUGHT_UP_ATTRIBUTE, CloudEvent, EventError, InstanceRef, PartyId, RECONCILED_ATTRIBUTE,
    VALIDATE_SUBSCRIPTION, parse_guid,
};
pub use names::{AppName, OrgName};
pub use printable::{Printable, needs_escape, printable};
pub use secret::Secret;

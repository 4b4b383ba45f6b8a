//! The simulator over real HTTP, as a client of Altinn would see it: Events (subscriptions,
//! validation, push with retries), the Events pull API, and the Storage instance query.

mod binary;
mod events;
mod events_pull;
mod query;

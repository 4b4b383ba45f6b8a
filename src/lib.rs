//! altinn-aos — module map (filled in as modules land).
pub mod config;
pub mod event;
pub mod simulator;
pub mod storage;

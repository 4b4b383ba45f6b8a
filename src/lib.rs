//! altinn-aos — module map (filled in as modules land).
pub mod simulator;

//! Altinn simulator (placeholder).

//! Helpers shared by agenthost plugins.
//!
//! Plugins run under tight per-call deadlines and are called once per batch
//! of events, so these helpers write straight into caller-owned buffers and
//! never build an intermediate JSON tree.

pub mod json;
pub mod lines;

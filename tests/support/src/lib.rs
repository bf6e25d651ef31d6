//! What the end-to-end tests and the load benchmark share: the real
//! `agenthost` binary, a mock LLM speaking the providers' exact wire
//! formats, the frames it sends, `/proc` probes, third-party MCP peers,
//! and golden files.

mod binary;
mod frames;
mod golden;
mod mock_llm;
pub mod postgres;
mod procfs;
mod python;
mod sse;

pub use binary::*;
pub use frames::*;
pub use golden::*;
pub use mock_llm::*;
pub use procfs::*;
pub use python::*;
pub use sse::*;

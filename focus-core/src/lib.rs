//! `focus-core`: FocusLLM's inference logic, independent of any model code.
//!
//! A long input is cut ([`Plan`]) into memory chunks of `S` tokens and a local window of
//! the last `W` tokens. Each chunk gets a dynamic prompt appended (BOS and the last
//! `min(512, S, W)` tokens); its last token, the *candidate*, runs through extra attention
//! projections. The candidates' keys and values of all chunks, decoded in parallel,
//! become a prefix the local window attends to. [`Session`] drives this through the
//! [`CondensingModel`] trait: prefill, then one step per generated token, and
//! [`Session::generate`] is the one generation loop. [`Reading`] names the ways an input can
//! be read: FocusLLM, or the truncated and full-attention baselines. A [`ChunkMemory`]
//! keeps the chunks' keys and values between inputs (many questions about one document).
//!
//! Reference: Li et al., *FocusLLM*, arXiv 2408.11745 (ACL 2025).

pub mod config;
pub mod error;
pub mod memory;
pub mod model;
pub mod plan;
pub mod reading;
pub mod sample;
pub mod session;
pub mod store;

pub use config::{Decode, FocusConfig, PromptConfig};
pub use error::{Error, Result};
pub use memory::ChunkMemory;
pub use model::CondensingModel;
pub use plan::{Plan, memory_chunks, window_input};
pub use reading::Reading;
pub use sample::Sampler;
pub use session::Session;
pub use store::{DiskStore, Listed, Lookup};

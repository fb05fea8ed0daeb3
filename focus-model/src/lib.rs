//! `focus-model`: the Llama-family decoder FocusLLM runs on, on any burn device.
//!
//! - [`LlamaConfig`]: the resolved shape (from an HF `config.json` or a GGUF header);
//!   `LlamaConfig::init(&device)` builds a randomly initialised model.
//! - [`LlamaForCausalLM`]: RMSNorm, RoPE, grouped-query attention with a KV cache,
//!   SwiGLU, tied or separate head. Field paths equal the HF checkpoint keys, and each
//!   layer may carry the FocusLLM candidate projections `beacon_{q,k,v,o}_proj`.
//! - [`candidate`]: the candidate projections as the trainable set (setup, low-rank
//!   updates, freezing, files); [`condensing`]: the model as focus-core's `CondensingModel`.
//! - [`load`]: an HF directory (safetensors) or a GGUF file, strictly checked.
//! - [`Tokenizer`]: `tokenizer.json`, or the vocabulary stored in a GGUF file.
//! - [`ChatTemplate`]: the model's own chat template, rendered as transformers does.

pub mod candidate;
pub mod chat;
pub mod condensing;
pub mod config;
pub mod cost;
#[cfg(feature = "flex")]
pub mod cpu;
pub mod error;
pub mod gguf;
pub mod layers;
pub mod model;
pub mod rope;
pub mod tokenizer;
pub mod weights;

pub use candidate::{LowRank, WeightSettings};
pub use chat::{ChatTemplate, Message};
pub use condensing::Candidates;
pub use config::{HfLlamaConfig, LlamaConfig};
pub use error::{Error, Mismatch, Misshaped, Result};
pub use layers::{LayerKv, NewKv, Rows};
pub use model::{Forward, KvCache, LlamaForCausalLM};
pub use tokenizer::{TextStream, Tokenizer};
pub use weights::{Loaded, load};

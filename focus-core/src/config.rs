//! FocusLLM settings.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// FocusLLM inference settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FocusConfig {
    /// Local window `W`: the last `W` input tokens are decoded normally.
    pub local_window: usize,
    /// Chunk length `S` of the memory.
    pub chunk_len: usize,
    /// The dynamic prompt each chunk reads.
    #[serde(flatten)]
    pub prompt: PromptConfig,
    /// How many chunks go through the model in one batched pass (bounds activation memory).
    pub max_batch: usize,
    /// How generated tokens are decoded after the prefill.
    #[serde(default)]
    pub decode: Decode,
}

/// The dynamic prompt that follows each chunk: the separator, then the last
/// `p = min(cap, S, W)` tokens of the local window. Training and inference share it, so a
/// trained file and the reading that uses it agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptConfig {
    /// Cap on the dynamic prompt's tokens (512 in the paper).
    #[serde(rename = "prompt_cap")]
    pub cap: usize,
    /// The token between a chunk and its dynamic prompt. `None` is the BOS given to the
    /// plan, as in the reference (which hard-codes Llama-2's BOS, id 1); a model whose BOS
    /// is not a document start may do better with another (e.g. its end-of-text token).
    #[serde(default)]
    pub separator: Option<u32>,
}

impl Default for PromptConfig {
    /// The reference's prompt: at most 512 tokens after BOS.
    fn default() -> Self {
        Self {
            cap: 512,
            separator: None,
        }
    }
}

/// How FocusLLM decodes after the prefill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decode {
    /// The method as specified: each new token makes new candidates in every chunk, and the
    /// whole local window (`W + 1 + t` rows) is computed again against them.
    #[default]
    Exact,
    /// Approximate: the local window's keys and values are kept from the prefill (computed
    /// against the candidates of that time); each new token is one row that attends to the
    /// fresh candidates and to the kept window. Faster per token, not the method's output.
    CachedWindow,
}

impl Default for FocusConfig {
    /// The paper's inference setting for passkey and ∞-Bench: `W = S = 2048`, `p ≤ 512`.
    fn default() -> Self {
        Self {
            local_window: 2048,
            chunk_len: 2048,
            prompt: PromptConfig::default(),
            max_batch: 16,
            decode: Decode::Exact,
        }
    }
}

impl FocusConfig {
    /// Settings with window `w` and chunk length `s`, other fields at their defaults.
    pub fn new(local_window: usize, chunk_len: usize) -> Self {
        Self {
            local_window,
            chunk_len,
            ..Self::default()
        }
    }

    /// Sets the batch cap.
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Checks that every setting is usable.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("local window", self.local_window),
            ("chunk length", self.chunk_len),
            ("prompt cap", self.prompt.cap),
            ("batch size", self.max_batch),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} must be positive")));
            }
        }
        Ok(())
    }

    /// Dynamic-prompt length `p = min(prompt_cap, S, W)`.
    pub fn prompt_len(&self) -> usize {
        self.prompt.cap.min(self.chunk_len).min(self.local_window)
    }

    /// Memory chunks `C` of an input of `len` tokens: everything before the last `W`
    /// tokens, `S` at a time (none when the input fits the window).
    pub fn num_chunks(&self, len: usize) -> usize {
        len.saturating_sub(self.local_window)
            .div_ceil(self.chunk_len)
    }

    /// Positions the chunk caches of an input of `len` tokens hold after the prefill: each
    /// chunk's own tokens and its prompt rows but the candidate (separator and `p - 1`
    /// tokens, i.e. `p` rows).
    pub fn cached_positions(&self, len: usize) -> usize {
        len.saturating_sub(self.local_window) + self.num_chunks(len) * self.prompt_len()
    }
}

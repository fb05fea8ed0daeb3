//! FocusLLM settings and the plan that cuts an input into memory chunks and a local window.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// FocusLLM inference settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FocusConfig {
    /// Local window `W`: the last `W` input tokens are decoded normally.
    pub local_window: usize,
    /// Chunk length `S` of the memory.
    pub chunk_len: usize,
    /// Cap on the dynamic prompt: `p = min(prompt_cap, S, W)` (512 in the paper).
    pub prompt_cap: usize,
    /// How many chunks go through the model in one batched pass (bounds activation memory).
    pub max_batch: usize,
    /// The token between a chunk and its dynamic prompt. `None` is the BOS given to the
    /// plan, as in the reference (which hard-codes Llama-2's BOS, id 1); a model whose BOS
    /// is not a document start may do better with another (e.g. its end-of-text token).
    #[serde(default)]
    pub separator: Option<u32>,
    /// How generated tokens are decoded after the prefill.
    #[serde(default)]
    pub decode: Decode,
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
            prompt_cap: 512,
            max_batch: 16,
            separator: None,
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
            ("prompt cap", self.prompt_cap),
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
        self.prompt_cap.min(self.chunk_len).min(self.local_window)
    }
}

/// How one input is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Memory chunks as ranges of the input (`S` tokens each; the last may be shorter).
    pub chunks: Vec<Range<usize>>,
    /// The local window as a range of the input (the last `min(W, L)` tokens).
    pub local: Range<usize>,
    /// Dynamic prompt: the separator (BOS unless set otherwise) followed by the last `p`
    /// tokens of the input.
    pub prompt: Vec<u32>,
}

impl Plan {
    /// Plans an input: the memory is everything before the last `W` tokens.
    ///
    /// Memory is used whenever the input is longer than the local window (the reference
    /// code only does so from 4096 tokens on; see `docs/design.md`).
    pub fn new(ids: &[u32], cfg: &FocusConfig, bos: u32) -> Result<Self> {
        let memory = ids.len().saturating_sub(cfg.local_window);
        Self::with_memory(ids, memory, memory..ids.len(), cfg, bos)
    }

    /// Plans a memory of `ids[..memory_end]` and a local window `local`, with the dynamic
    /// prompt `p = min(prompt_cap, S, |local|)` taken from the end of `local`. Inference
    /// puts the memory right before the window ([`new`](Self::new)); training also puts it
    /// over the whole sequence, the window inside it (the repetition objective, spec §4.2).
    pub fn with_memory(
        ids: &[u32],
        memory_end: usize,
        local: Range<usize>,
        cfg: &FocusConfig,
        bos: u32,
    ) -> Result<Self> {
        cfg.validate()?;
        if ids.is_empty() || local.is_empty() {
            return Err(Error::Input("empty input".into()));
        }
        if memory_end > ids.len() || local.end > ids.len() {
            return Err(Error::Input(format!(
                "memory ..{memory_end} or window {local:?} outside an input of {} tokens",
                ids.len()
            )));
        }
        let chunks = (0..memory_end)
            .step_by(cfg.chunk_len)
            .map(|s| s..(s + cfg.chunk_len).min(memory_end))
            .collect();
        let p = cfg.prompt_cap.min(cfg.chunk_len).min(local.len());
        let mut prompt = Vec::with_capacity(p + 1);
        prompt.push(cfg.separator.unwrap_or(bos));
        prompt.extend_from_slice(&ids[local.end - p..local.end]);
        Ok(Self {
            chunks,
            local,
            prompt,
        })
    }

    /// Number of memory chunks `C`.
    pub fn num_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The input ids of chunk `j` at prefill: `chunk_j ‖ separator ‖ last p tokens`.
    pub fn chunk_input(&self, ids: &[u32], j: usize) -> Vec<u32> {
        let mut row = Vec::with_capacity(self.chunks[j].len() + self.prompt.len());
        row.extend_from_slice(&ids[self.chunks[j].clone()]);
        row.extend_from_slice(&self.prompt);
        row
    }

    /// The local-pass ids: BOS (unless the window already starts with it) and the window.
    pub fn local_input(&self, ids: &[u32], bos: u32) -> Vec<u32> {
        let window = &ids[self.local.clone()];
        let mut out = Vec::with_capacity(window.len() + 1);
        if window.first() != Some(&bos) {
            out.push(bos);
        }
        out.extend_from_slice(window);
        out
    }

    /// Groups of chunk indices that run as one batch: equal lengths, at most `max_batch`.
    pub fn batches(&self, max_batch: usize) -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        for j in 0..self.chunks.len() {
            match out.last_mut() {
                Some(b)
                    if b.len() < max_batch
                        && self.chunks[b.start].len() == self.chunks[j].len() =>
                {
                    b.end = j + 1
                }
                _ => out.push(j..j + 1),
            }
        }
        out
    }
}

//! The plan that cuts an input into memory chunks and a local window, and the one rule for
//! where BOS goes.

use std::ops::Range;

use crate::config::FocusConfig;
use crate::error::{Error, Result};

/// The one BOS rule: a window read without the text before it (FocusLLM's local pass
/// after its memory, the truncated baseline, any reading that starts inside a document)
/// starts with BOS, as the reference's local pass does, unless it starts with BOS already;
/// an input read from its first token is read exactly as the tokenizer gave it, as the
/// plain model reads it.
pub fn window_input(window: &[u32], cut: bool, bos: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(window.len() + 1);
    if cut && window.first() != Some(&bos) {
        out.push(bos);
    }
    out.extend_from_slice(window);
    out
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
        let p = cfg.prompt.cap.min(cfg.chunk_len).min(local.len());
        let mut prompt = Vec::with_capacity(p + 1);
        prompt.push(cfg.prompt.separator.unwrap_or(bos));
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

    /// Whether the input has a memory (at least one chunk).
    pub fn uses_memory(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// The local-pass ids: the window, after BOS when the memory holds what came before
    /// it ([`window_input`]); an input without memory is read as given.
    pub fn local_input(&self, ids: &[u32], bos: u32) -> Vec<u32> {
        window_input(&ids[self.local.clone()], self.uses_memory(), bos)
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

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

/// The memory chunks of an input of `len` tokens made of pieces that begin at `starts`
/// ([`Plan::with_pieces`]; no starts: the uniform cut).
pub fn memory_chunks(len: usize, starts: &[usize], cfg: &FocusConfig) -> Vec<Range<usize>> {
    let memory = len.saturating_sub(cfg.local_window);
    cut(
        memory,
        cfg.chunk_len,
        &documents(starts, len, cfg.chunk_len),
    )
}

/// The memory `0..end` in chunks of at most `s` tokens, each stretch between cuts (and
/// before the first) chunked from its own start.
fn cut(end: usize, s: usize, cuts: &[usize]) -> Vec<Range<usize>> {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| 0 < c && c < end).collect();
    bounds.push(end);
    let mut out = Vec::new();
    let mut from = 0;
    for to in bounds {
        out.extend((from..to).step_by(s).map(|a| a..(a + s).min(to)));
        from = to;
    }
    out
}

/// The starts of the pieces of at least `s` tokens, of pieces starting at `starts` in an
/// input of `len` tokens.
fn documents(starts: &[usize], len: usize, s: usize) -> Vec<usize> {
    let mut starts: Vec<usize> = starts.iter().copied().filter(|&a| a < len).collect();
    starts.sort_unstable();
    starts.dedup();
    let ends = starts.iter().skip(1).copied().chain([len]);
    starts
        .iter()
        .zip(ends)
        .filter(|&(&a, b)| b - a >= s)
        .map(|(&a, _)| a)
        .collect()
}

/// How one input is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Memory chunks as ranges of the input (at most `S` tokens each: `S` but for the last
    /// chunk of the memory or of a piece, [`with_pieces`](Self::with_pieces)).
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
        Self::with_pieces(ids, &[], cfg, bos)
    }

    /// Plans an input made of pieces (a chat's messages) that begin at `starts` (positions
    /// in `ids`, ascending). A piece of at least `S` tokens (a document) starts a chunk of
    /// its own, so its chunks are its own first `S` tokens and so on, whatever text came
    /// before it: the same document after another system prompt or another earlier turn has
    /// the same chunks (and finds them in a document memory). Shorter pieces stay in the
    /// chunks of the text around them, so that a conversation of many short turns does not
    /// cost a chunk each. Every chunk still holds at most `S` tokens; without starts this
    /// is [`new`](Self::new), the reference's uniform cut.
    pub fn with_pieces(ids: &[u32], starts: &[usize], cfg: &FocusConfig, bos: u32) -> Result<Self> {
        let memory = ids.len().saturating_sub(cfg.local_window);
        let mut plan = Self::with_memory(ids, memory, memory..ids.len(), cfg, bos)?;
        if !starts.is_empty() {
            plan.chunks = memory_chunks(ids.len(), starts, cfg);
        }
        Ok(plan)
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
        let chunks = cut(memory_end, cfg.chunk_len, &[]);
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

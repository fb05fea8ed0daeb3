//! How a model reads a long input: with FocusLLM memory, or one of the two baselines every
//! evaluation compares it with.

use serde::{Deserialize, Serialize};

use crate::config::FocusConfig;
use crate::plan::{memory_chunks, window_input};

/// How the model sees an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reading {
    /// FocusLLM: memory chunks decoded in parallel, then the local window. An input that
    /// fits the window has no memory and is read as the plain model reads it.
    Focus(FocusConfig),
    /// The truncated-context baseline: the last `window` tokens only, after BOS when
    /// anything was cut (FocusLLM's local pass without candidates).
    Truncated(usize),
    /// The plain decoder with full attention over the input exactly as tokenized (nothing
    /// prepended); only up to the model's context length.
    Full,
}

impl Reading {
    /// Short name used in tables and JSON: `focus`, `truncated` or `full`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Focus(_) => "focus",
            Self::Truncated(_) => "truncated",
            Self::Full => "full",
        }
    }

    /// Whether an input of `len` tokens is read with a memory.
    pub fn uses_memory(&self, len: usize) -> bool {
        matches!(self, Self::Focus(cfg) if cfg.num_chunks(len) > 0)
    }

    /// The positions one pass of the model needs to read an input of `len` tokens and then
    /// `new` generated ones: for FocusLLM with memory, the larger of the local pass (a
    /// candidate per chunk, BOS, the window and the new tokens) and the longest chunk's pass
    /// (the chunk, the separator, the dynamic prompt and the new tokens); for the truncated window, BOS
    /// when something was cut, the window and the new tokens; for full attention, all of
    /// them.
    pub fn positions(&self, len: usize, new: usize) -> usize {
        self.piece_positions(len, &[], new)
    }

    /// [`positions`](Self::positions) for an input made of pieces that begin at `starts`
    /// (a chat's messages, chunked by [`Plan::with_pieces`](crate::Plan::with_pieces),
    /// which may make more chunks than the uniform cut).
    pub fn piece_positions(&self, len: usize, starts: &[usize], new: usize) -> usize {
        match *self {
            Self::Focus(cfg) if self.uses_memory(len) => {
                let chunks = memory_chunks(len, starts, &cfg).len();
                let local = chunks + 1 + cfg.local_window + new;
                let longest = cfg.chunk_len.min(len - cfg.local_window);
                let chunk = longest + 1 + cfg.prompt_len() + new;
                local.max(chunk)
            }
            Self::Focus(_) | Self::Full => len + new,
            Self::Truncated(w) => usize::from(len > w) + len.min(w) + new,
        }
    }

    /// Whether an input of `len` tokens followed by `extra` more fits a model of
    /// `max_positions` positions when read this way.
    pub fn fits(&self, max_positions: usize, len: usize, extra: usize) -> bool {
        self.positions(len, extra) <= max_positions
    }

    /// The ids of the single plain pass that reads `ids` this way, or `None` when FocusLLM
    /// reads them with a memory: full attention and an input without memory read the ids
    /// as given, the truncated baseline the last `window` of them after BOS when it cut
    /// something ([`window_input`]).
    pub fn plain_input(&self, ids: &[u32], bos: u32) -> Option<Vec<u32>> {
        match *self {
            Self::Focus(_) if self.uses_memory(ids.len()) => None,
            Self::Focus(_) | Self::Full => Some(ids.to_vec()),
            Self::Truncated(w) => {
                let cut = ids.len().saturating_sub(w);
                Some(window_input(&ids[cut..], cut > 0, bos))
            }
        }
    }
}

//! How a model reads a long input: with FocusLLM memory, or one of the two baselines every
//! evaluation compares it with.

use serde::{Deserialize, Serialize};

use crate::config::FocusConfig;

/// How the model sees an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reading {
    /// FocusLLM: memory chunks decoded in parallel, then the local window.
    Focus(FocusConfig),
    /// The truncated-context baseline: BOS and the last `window` tokens only (FocusLLM's
    /// local pass without candidates).
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

    /// Whether an input of `len` tokens followed by `extra` more fits a model of
    /// `max_positions` positions when read this way (the truncated window's BOS included).
    pub fn fits(&self, max_positions: usize, len: usize, extra: usize) -> bool {
        match self {
            Self::Focus(_) => true,
            Self::Truncated(w) => (*w).min(len) + 1 + extra <= max_positions,
            Self::Full => len + extra <= max_positions,
        }
    }

    /// The part of `ids` a baseline reads (`None` for FocusLLM, which reads all of it).
    pub fn kept<'a>(&self, ids: &'a [u32]) -> Option<&'a [u32]> {
        match *self {
            Self::Focus(_) => None,
            Self::Truncated(w) => Some(&ids[ids.len().saturating_sub(w)..]),
            Self::Full => Some(ids),
        }
    }
}

//! `focus-train`: training of FocusLLM's candidate projections (`beacon_{q,k,v,o}_proj`)
//! with the continuation and repetition losses, the base decoder frozen. Evaluation during
//! training is held-out loss, plus whatever [`Probe`] the caller hands in.
//!
//! - [`config`]: the settings of a run (objectives, schedule, curriculum).
//! - [`data`]: text files to packed token sequences.
//! - [`example`]: where the local span and the memory sit in a sequence (spec §4.2).
//! - [`loss`]: the loss of one example, with the chunk keys computed without autodiff.
//! - [`synth`]: retrieval-shaped documents (a fact hidden in a haystack, a cue at the end).
//! - [`train`](mod@train): the loop, held-out evaluation and the caller's [`Probe`].
//! - [`checkpoint`]: the run folder, its log and the checkpoint `--resume` continues.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod example;
pub mod loss;
pub mod synth;
pub mod train;

pub use checkpoint::{LineKind, LogLine, RunDir};
pub use config::{Objective, Schedule, TrainConfig};
pub use error::{Error, Result};
pub use train::{Data, Probe, RetrievalSource, RunOptions, train};

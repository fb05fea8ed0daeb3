//! `focus-train`: training of FocusLLM's candidate projections (`beacon_{q,k,v,o}_proj`)
//! with the continuation and repetition losses, the base decoder frozen. Evaluation during
//! training is held-out loss, plus whatever [`Probe`] the caller hands in.
//!
//! - [`data`]: text files to packed token sequences.
//! - [`sample`]: where the local span and the memory sit in a sequence (spec §4.2).
//! - [`step`]: the loss of one example, with the chunk keys computed without autodiff.
//! - [`synth`]: retrieval-shaped documents (a fact hidden in a haystack, a cue at the end).
//! - [`trainer`] and [`run`]: settings, schedule, the loop, evaluation, checkpoints.

pub mod data;
pub mod error;
pub mod run;
pub mod sample;
pub mod step;
pub mod synth;
pub mod trainer;

pub use error::{Error, Result};
pub use run::{Data, Probe, RetrievalSource, RunOptions, train};
pub use trainer::{Objective, RunDir, Schedule, TrainConfig};

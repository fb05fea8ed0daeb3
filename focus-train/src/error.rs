//! The error type of `focus-train`.

use std::path::PathBuf;

/// What can go wrong while evaluating or training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model or its files.
    #[error(transparent)]
    Model(#[from] focus_model::Error),
    /// FocusLLM settings or input.
    #[error(transparent)]
    Core(#[from] focus_core::Error),
    /// Unusable settings or data (the message names the problem).
    #[error("{0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The loss or the gradient became NaN or infinite: the run stopped before the update
    /// (the last checkpoint, if any, is kept).
    #[error("training diverged at step {step}: {what} is not finite")]
    Diverged {
        /// The step whose loss or gradient was not finite (1-based).
        step: usize,
        /// "the loss" or "the gradient norm".
        what: &'static str,
    },
    /// A checkpoint is missing, corrupt or does not match the run.
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

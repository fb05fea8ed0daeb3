//! The error type of `focus-model`.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration is malformed or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The model uses something this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A GGUF file is malformed or truncated.
    #[error("bad GGUF file {path}: {msg}")]
    Gguf { path: PathBuf, msg: String },
    /// A safetensors file is malformed.
    #[error("bad safetensors file {path}: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    /// The weights do not match the model: missing, unused or mis-shaped tensors.
    #[error("weights do not match the model: {0}")]
    Weights(String),
    /// The tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A chat template could not be read or rendered.
    #[error("chat template: {0}")]
    Chat(String),
    /// Something about the input (ids, lengths) is invalid.
    #[error("invalid input: {0}")]
    Input(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

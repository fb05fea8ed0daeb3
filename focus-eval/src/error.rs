//! The error type of `focus-eval`.

/// What can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model or its files.
    #[error(transparent)]
    Model(#[from] focus_model::Error),
    /// FocusLLM settings or input.
    #[error(transparent)]
    Core(#[from] focus_core::Error),
    /// Unusable settings or input (the message names the problem).
    #[error("{0}")]
    Input(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The error type of `focus-core`.

/// Invalid settings or input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid FocusLLM setting: {0}")]
    Config(String),
    /// The input cannot be processed.
    #[error("invalid input: {0}")]
    Input(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    Weights(Box<Mismatch>),
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

/// How a set of weights differs from the model that reads them ([`Error::Weights`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// The file or model directory the weights came from.
    pub path: Option<PathBuf>,
    /// Tensors of the model that no file holds (module paths, with burn's names).
    pub missing: Vec<String>,
    /// Tensors in the file that the model has no place for (checkpoint keys).
    pub unused: Vec<String>,
    /// Tensors whose shape in the file is not the model's.
    pub misshaped: Vec<Misshaped>,
    /// Anything else reported for a tensor (another element type, a failed conversion).
    pub other: Vec<String>,
    /// A likely cause, said after the details.
    pub hint: Option<String>,
}

/// A tensor whose shape differs between a file and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misshaped {
    /// The tensor's path in the model.
    pub name: String,
    /// Its shape in the file (burn's `[in, out]` for linear weights).
    pub in_file: Vec<usize>,
    /// The shape the model needs.
    pub in_model: Vec<usize>,
}

impl Mismatch {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unused.is_empty()
            && self.misshaped.is_empty()
            && self.other.is_empty()
    }

    /// `Ok` when nothing differs, else this mismatch as an [`Error::Weights`].
    pub fn into_result(self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Weights(Box::new(self)))
        }
    }
}

/// At most six names, then how many more.
fn names(v: &[String]) -> String {
    if v.len() > 6 {
        format!("{} (and {} more)", v[..6].join(", "), v.len() - 6)
    } else {
        v.join(", ")
    }
}

impl std::fmt::Display for Mismatch {
    /// One line: the first tensor that does not fit in words (a file for another model size
    /// mismatches every tensor, so the rest are counted), then the missing and the unused.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        let first = self.misshaped.first().map(|m| {
            format!(
                "tensor {} has shape {:?} in the file, the model needs {:?}",
                m.name, m.in_file, m.in_model
            )
        });
        if let Some(first) = first.or_else(|| self.other.first().cloned()) {
            parts.push(match self.misshaped.len() + self.other.len() {
                1 => first,
                n => format!("{first} (and {} more tensors that do not fit)", n - 1),
            });
        }
        if !self.missing.is_empty() {
            parts.push(format!("missing tensors: {}", names(&self.missing)));
        }
        if !self.unused.is_empty() {
            parts.push(format!("unexpected tensors: {}", names(&self.unused)));
        }
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", parts.join("; "))?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

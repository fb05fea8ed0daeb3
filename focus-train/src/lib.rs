//! `focus-train`: training of FocusLLM's candidate projections (`beacon_{q,k,v,o}_proj`)
//! with the continuation and repetition losses, the base decoder frozen, and the
//! evaluation protocols ([`eval`]) that the training loop and the CLI share.

pub mod error;
pub mod eval;

pub use error::{Error, Result};

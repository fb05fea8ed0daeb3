//! Mutation tests of every loader: each mutated input must load to an error, or to
//! something still valid, and never panic. The GGUF reader (also: never an allocation larger
//! than a bound proportional to the file's size) and the tokenizer built from GGUF metadata
//! (`gguf`), the candidate-weights loader on full and low-rank files (`candidates`), and an
//! HF directory's `config.json` and `tokenizer.json` (`hf`).

use std::panic::{AssertUnwindSafe, catch_unwind};

mod candidates;
mod gguf;
mod hf;

/// Outcomes of mutation cases: the cases that panicked, and the counts of errors and of
/// inputs that loaded.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) panics: Vec<u64>,
    pub(crate) errors: u64,
    pub(crate) loaded: u64,
}

impl Tally {
    /// Runs case `case` (`f`), catching a panic.
    pub(crate) fn run<T, E>(&mut self, case: u64, f: impl FnOnce() -> Result<T, E>) {
        match catch_unwind(AssertUnwindSafe(f)) {
            Err(_) => self.panics.push(case),
            Ok(Err(_)) => self.errors += 1,
            Ok(Ok(_)) => self.loaded += 1,
        }
    }

    pub(crate) fn assert_no_panic(&self) {
        assert!(
            self.panics.is_empty(),
            "{} cases panicked, first: {:?}",
            self.panics.len(),
            &self.panics[..self.panics.len().min(10)]
        );
    }
}

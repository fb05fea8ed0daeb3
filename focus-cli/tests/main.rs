//! End-to-end tests of the `focus` binary, in one test binary (one link of burn).
//!
//! - `tiny`: every subcommand on the tiny fixture model, and bad inputs (one line on stderr,
//!   exit code 2, no output file).
//! - `smollm2`: the default model (fetched by scripts/fetch-assets.sh): the README's demo and
//!   the llama.cpp perplexity protocol.

mod common;
mod smollm2;
mod tiny;

//! End-to-end tests of the `focus` binary, in one test binary (one link of burn).
//!
//! - `tiny`: every subcommand on the tiny fixture model, and bad inputs (one line on stderr,
//!   exit code 2, no output file).
//! - `bad_input`: broken model directories, settings the model cannot hold, unwritable
//!   outputs, corrupt checkpoints and interrupted runs.
//! - `serve`: the OpenAI-compatible server over sockets (endpoints, streaming, errors,
//!   a client that leaves).
//! - `smollm2`: the default model (fetched by scripts/fetch-assets.sh): the README's demo and
//!   the llama.cpp perplexity protocol.

mod bad_input;
mod common;
mod serve;
mod smollm2;
mod tiny;

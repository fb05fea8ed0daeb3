//! One integration-test binary (linking burn once).
//!
//! - `parity_tiny`: a seeded random GQA Llama against transformers, layer by layer.
//! - `parity_smollm2`: the real default model (GGUF) against transformers.
//! - `gguf`: dequantisation against gguf-py, and malformed files.
//! - `loading`: strict loading errors.
//! - `precision`: f16 and bf16 against the f32 references, each in a process of its own.
//! - `training`: the training loss, step, resume and low-rank updates on the tiny model.

mod focus_fidelity;
mod gguf;
mod loading;
mod parity_smollm2;
mod parity_tiny;
mod precision;
mod training;

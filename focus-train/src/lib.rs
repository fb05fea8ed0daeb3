//! `focus-train`: training of FocusLLM's candidate projections (`beacon_{q,k,v,o}_proj`)
//! with the continuation and repetition losses, the base decoder frozen.
//!
//! This crate has no public API yet; the model side (candidate projections, their
//! initialisation as copies of the base projections and their safetensors I/O) lives in
//! `focus_model::focus`.

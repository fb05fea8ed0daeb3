//! Loading weights, strictly: an HF model directory (safetensors, sharded or not) or a
//! GGUF file. Both go through burn-store, with HF key names and the PyTorch layout; a
//! missing, unused or mis-shaped tensor is an error.

use std::collections::BTreeSet;
use std::path::Path;

use burn::prelude::*;
use burn::store::{
    ApplyError, ApplyResult, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::DType;

use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::model::LlamaForCausalLM;
use crate::tokenizer::Tokenizer;

mod gguf;
mod hf;

pub use gguf::{gguf_config, hf_name, load_gguf, unpermute_rows};
pub use hf::load_hf_dir;

/// A model with its tokenizer, as loaded from disk.
#[derive(Debug)]
pub struct Loaded {
    pub model: LlamaForCausalLM,
    pub tokenizer: Tokenizer,
    /// The model's chat template, when its files carry one.
    pub chat_template: Option<ChatTemplate>,
}

/// Loads a model from a path: a `.gguf` file or an HF model directory.
pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    if path.is_dir() {
        load_hf_dir(path, device)
    } else if path.is_file() {
        load_gguf(path, device)
    } else {
        Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ))
    }
}

/// Keys a checkpoint may hold that the model does not need.
fn ignorable(key: &str) -> bool {
    key.ends_with("rotary_emb.inv_freq")
}

/// Turns an [`ApplyResult`] (or several, one per shard) into a strict verdict.
pub(crate) fn check(results: &[ApplyResult]) -> Result<()> {
    let applied: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.applied.iter().map(String::as_str))
        .collect();
    let mut problems = Vec::new();
    let errors: Vec<ApplyError> = results.iter().flat_map(|r| r.errors.clone()).collect();
    problems.extend(apply_errors(&errors));
    let missing: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.missing.iter().map(|(p, _)| p.as_str()))
        .filter(|p| !applied.contains(p))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing tensors: {}", list(missing.into_iter())));
    }
    let unused: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.unused.iter().map(String::as_str))
        .filter(|p| !ignorable(p) && !applied.contains(p))
        .collect();
    // Across shards a key is "unused" by every shard that does not hold it; only keys that no
    // shard applied count.
    if !unused.is_empty() {
        problems.push(format!("unexpected tensors: {}", list(unused.into_iter())));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Weights(problems.join("; ")))
    }
}

/// The tensors a file could not give the model, as one sentence: the first in words, then
/// how many more (a file for another model size mismatches every tensor).
pub(crate) fn apply_errors(errors: &[ApplyError]) -> Option<String> {
    let first = match errors.first()? {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!(
            "tensor {path} has shape {:?} in the file, the model needs {:?}",
            found.as_slice(),
            expected.as_slice()
        ),
        ApplyError::DTypeMismatch {
            path,
            expected,
            found,
        } => format!("tensor {path} is {found:?} in the file, the model needs {expected:?}"),
        other => other.to_string(),
    };
    Some(match errors.len() {
        1 => first,
        n => format!("{first} (and {} more tensors that do not fit)", n - 1),
    })
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.len() > 6 {
        format!("{} (and {} more)", v[..6].join(", "), v.len() - 6)
    } else {
        v.join(", ")
    }
}

/// The float type of `device` (f32 unless it was configured otherwise, e.g. `--dtype bf16`).
/// Weights read from files are cast to it, so every operand of an operation agrees.
pub fn float_dtype(device: &Device) -> DType {
    device.settings().float_dtype.into()
}

/// Applies the tensors of the safetensors file `path` (those whose names match `filter`, when
/// given) to `model`, cast to the float type of `device`. `pytorch`: the file stores linear
/// weights as `[out, in]`, as transformers does, and they are transposed on the way in.
pub(crate) fn apply_safetensors(
    model: &mut LlamaForCausalLM,
    path: &Path,
    device: &Device,
    pytorch: bool,
    filter: Option<&str>,
) -> Result<ApplyResult> {
    let cast = FloatCastAdapter::to(float_dtype(device));
    // Without burn-store's own validation the mismatches come back one by one in the result
    // (every caller checks them), so the error can say what they have in common.
    let mut store = SafetensorsStore::from_file(path)
        .allow_partial(true)
        .validate(false);
    store = if pytorch {
        store.with_from_adapter(PyTorchToBurnAdapter.chain(cast))
    } else {
        store.with_from_adapter(cast)
    };
    if let Some(pattern) = filter {
        store = store.with_regex(pattern);
    }
    model.load_from(&mut store).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

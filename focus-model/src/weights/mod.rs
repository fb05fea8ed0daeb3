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
use crate::error::{Error, Mismatch, Misshaped, Result};
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

/// What `results` (one per file read) say is wrong, naming `path`. `wanted` picks the model
/// tensors the files were meant to fill: one outside it that stays empty is no error.
pub(crate) fn mismatch(
    results: &[ApplyResult],
    path: Option<&Path>,
    wanted: impl Fn(&str) -> bool,
) -> Mismatch {
    let applied: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.applied.iter().map(String::as_str))
        .collect();
    let mut m = Mismatch {
        path: path.map(Path::to_path_buf),
        ..Mismatch::default()
    };
    for e in results.iter().flat_map(|r| &r.errors) {
        match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => m.misshaped.push(Misshaped {
                name: path.clone(),
                in_file: found.as_slice().to_vec(),
                in_model: expected.as_slice().to_vec(),
            }),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => m.other.push(format!(
                "tensor {path} is {found:?} in the file, the model needs {expected:?}"
            )),
            other => m.other.push(other.to_string()),
        }
    }
    let missing: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.missing.iter().map(|(p, _)| p.as_str()))
        .filter(|p| wanted(p) && !applied.contains(p))
        .collect();
    // Across shards a key is "unused" by every shard that does not hold it; only keys that no
    // shard applied count.
    let unused: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r.unused.iter().map(String::as_str))
        .filter(|p| !ignorable(p) && !applied.contains(p))
        .collect();
    m.missing = missing.into_iter().map(String::from).collect();
    m.unused = unused.into_iter().map(String::from).collect();
    m
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

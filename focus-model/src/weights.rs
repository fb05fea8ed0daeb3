//! Loading weights, strictly: an HF model directory (safetensors, sharded or not) or a
//! GGUF file. Both go through burn-store, with HF key names and the PyTorch layout; a
//! missing, unused or mis-shaped tensor is an error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, ApplyResult, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::{Bytes, DType};

use crate::config::{HfLlamaConfig, LlamaConfig};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::LlamaForCausalLM;
use crate::tokenizer::Tokenizer;

/// A model with its tokenizer, as loaded from disk.
#[derive(Debug)]
pub struct Loaded {
    pub model: LlamaForCausalLM,
    pub tokenizer: Tokenizer,
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
fn check(results: &[ApplyResult]) -> Result<()> {
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

/// The safetensors files of an HF directory: `model.safetensors`, or the shards named
/// in `model.safetensors.index.json`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::Weights(format!(
            "{} holds neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Safetensors {
        path: index.clone(),
        msg: e.to_string(),
    })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Safetensors {
            path: index.clone(),
            msg: "no weight_map".into(),
        })?;
    let files: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
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

/// Loads `config.json`, the safetensors weights and `tokenizer.json` of an HF directory.
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<Loaded> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.is_file() {
        return Err(Error::Config(format!(
            "{} is not a model directory (no config.json)",
            dir.display()
        )));
    }
    let cfg = HfLlamaConfig::from_file(&cfg_path)?.resolve()?;
    let files = safetensors_files(dir)?;
    let mut bytes = 0u64;
    for file in &files {
        let meta = std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
        if !meta.is_file() {
            return Err(Error::io(
                file,
                std::io::Error::new(std::io::ErrorKind::NotFound, "shard not found"),
            ));
        }
        bytes = bytes.saturating_add(meta.len());
    }
    cfg.check_fits(bytes, dir)?;
    let mut model = cfg.init(device);
    let mut results = Vec::new();
    for file in files {
        results.push(apply_safetensors(&mut model, &file, device, true, None)?);
    }
    check(&results)?;
    let tokenizer = Tokenizer::from_file(
        &dir.join("tokenizer.json"),
        cfg.bos_token_id,
        cfg.eos_token_ids.clone(),
    )?;
    Ok(Loaded { model, tokenizer })
}

/// The resolved configuration stored in a GGUF header.
pub fn gguf_config(g: &GgufFile) -> Result<LlamaConfig> {
    let arch = g
        .get("general.architecture")?
        .as_str()
        .unwrap_or_default()
        .to_string();
    if arch != "llama" {
        return Err(Error::Unsupported(format!(
            "GGUF architecture {arch:?}; only \"llama\" is supported"
        )));
    }
    if g.tensors.iter().any(|t| t.name == "rope_freqs.weight") {
        return Err(Error::Unsupported(
            "GGUF rope_freqs (llama3 RoPE scaling stored as a tensor)".into(),
        ));
    }
    let k = |s: &str| format!("llama.{s}");
    let heads = g.get_u64(&k("attention.head_count"))? as usize;
    let hidden = g.get_u64(&k("embedding_length"))? as usize;
    let vocab = match g.metadata.get(&k("vocab_size")).and_then(|v| v.as_u64()) {
        Some(v) => v as usize,
        None => g
            .get("tokenizer.ggml.tokens")?
            .as_array()
            .map(<[_]>::len)
            .unwrap_or(0),
    };
    let head_dim = match g
        .metadata
        .get(&k("rope.dimension_count"))
        .and_then(|v| v.as_u64())
    {
        Some(d) => d as usize,
        None if heads > 0 && !hidden.is_multiple_of(heads) => {
            return Err(Error::Config(format!(
                "embedding_length {hidden} is not a multiple of head_count {heads} (and no \
                 rope.dimension_count is given)"
            )));
        }
        None => hidden / heads.max(1),
    };
    let cfg = LlamaConfig::new(
        vocab,
        hidden,
        g.get_u64(&k("feed_forward_length"))? as usize,
        g.get_u64(&k("block_count"))? as usize,
        heads,
        g.metadata
            .get(&k("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(heads),
        head_dim,
    )
    .with_max_position_embeddings(g.get_u64(&k("context_length"))? as usize)
    .with_rms_norm_eps(g.get_f64(&k("attention.layer_norm_rms_epsilon"))?)
    .with_rope_theta(
        g.metadata
            .get(&k("rope.freq_base"))
            .and_then(|v| v.as_f64())
            .unwrap_or(10_000.0),
    )
    .with_tie_word_embeddings(!g.tensors.iter().any(|t| t.name == "output.weight"))
    .with_bos_token_id(g.get_u64("tokenizer.ggml.bos_token_id").unwrap_or(1) as u32)
    .with_eos_token_ids(vec![
        g.get_u64("tokenizer.ggml.eos_token_id").unwrap_or(2) as u32
    ]);
    cfg.validate()?;
    Ok(cfg)
}

/// The HF name of a GGUF tensor, or `None` if it has no counterpart.
pub fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let mapped = match tail {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{mapped}"))
}

/// Undoes llama.cpp's Q/K row permutation (interleaved RoPE -> HF `rotate_half` layout).
///
/// `w` is row-major `[rows, cols]`. Within each head, llama.cpp stores the rows of the two
/// rotary halves interleaved (`[half, 2]`); HF keeps them as two blocks (`[2, half]`):
/// `w.reshape(n_head, half, 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let half = rows / n_head / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                // source row (h, i, j) in [n_head, half, 2]; destination (h, j, i) in [n_head, 2, half]
                let src = (h * half + i) * 2 + j;
                let dst = (h * 2 + j) * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn gguf_tensor(g: &GgufFile, info: &TensorInfo, cfg: &LlamaConfig) -> Result<PackTensor> {
    let name = hf_name(&info.name)
        .ok_or_else(|| Error::Weights(format!("unexpected GGUF tensor {}", info.name)))?;
    let shape = info.shape();
    let mut data = g.dequantize(info);
    let n_head = if info.name.ends_with("attn_q.weight") {
        Some(cfg.num_attention_heads)
    } else if info.name.ends_with("attn_k.weight") {
        Some(cfg.num_key_value_heads)
    } else {
        None
    };
    if let Some(n_head) = n_head {
        let (rows, cols) = (shape[0], shape.get(1).copied().unwrap_or(1));
        if rows % (2 * n_head) != 0 {
            return Err(Error::Weights(format!(
                "{}: {rows} rows do not split into {n_head} heads",
                info.name
            )));
        }
        data = unpermute_rows(&data, rows, cols, n_head);
    }
    Ok(PackTensor::new(
        name,
        DType::F32,
        shape,
        None,
        Bytes::from_elems(data),
    ))
}

/// Loads a GGUF file: configuration from its metadata, weights dequantised to f32 (Q/K
/// rows un-permuted to the HF layout), and the tokenizer rebuilt from its vocabulary.
pub fn load_gguf(path: &Path, device: &Device) -> Result<Loaded> {
    let g = GgufFile::open(path)?;
    let cfg = gguf_config(&g)?;
    cfg.check_fits(g.file_len(), path)?;
    let mut model = cfg.init(device);
    let tensors = g
        .tensors
        .iter()
        .map(|t| gguf_tensor(&g, t, &cfg))
        .collect::<Result<Vec<_>>>()?;
    let adapter: Box<dyn ModuleAdapter> =
        Box::new(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(float_dtype(device))));
    let result = model.apply(tensors, None, Some(adapter), false);
    check(&[result])?;
    let tokenizer = Tokenizer::from_gguf(&g)?;
    Ok(Loaded { model, tokenizer })
}

//! GGUF files as a Llama: the configuration from the metadata, the tensors dequantised to
//! f32 under their HF names (Q/K rows un-permuted to the HF layout), the tokenizer rebuilt
//! from the vocabulary.

use std::path::Path;

use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::{Bytes, DType};

use super::{Loaded, float_dtype, mismatch};
use crate::chat::ChatTemplate;
use crate::config::LlamaConfig;
use crate::error::{Error, Mismatch, Result};
use crate::gguf::{GgufFile, TensorInfo};
use crate::tokenizer::Tokenizer;

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

fn gguf_tensor(
    g: &GgufFile,
    path: &Path,
    info: &TensorInfo,
    cfg: &LlamaConfig,
) -> Result<PackTensor> {
    let name = hf_name(&info.name).ok_or_else(|| {
        Error::Weights(Box::new(Mismatch {
            path: Some(path.to_path_buf()),
            unused: vec![info.name.clone()],
            ..Mismatch::default()
        }))
    })?;
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
            return Err(Error::Gguf {
                path: path.to_path_buf(),
                msg: format!(
                    "{}: {rows} rows do not split into {n_head} heads",
                    info.name
                ),
            });
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
        .map(|t| gguf_tensor(&g, path, t, &cfg))
        .collect::<Result<Vec<_>>>()?;
    let adapter: Box<dyn ModuleAdapter> =
        Box::new(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(float_dtype(device))));
    let result = model.apply(tensors, None, Some(adapter), false);
    mismatch(&[result], Some(path), |_| true).into_result()?;
    let tokenizer = Tokenizer::from_gguf(&g)?;
    let chat_template = ChatTemplate::from_gguf(&g)?;
    Ok(Loaded {
        model,
        tokenizer,
        chat_template,
    })
}

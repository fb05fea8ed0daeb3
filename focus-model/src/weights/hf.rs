//! HF model directories: `config.json`, the safetensors weights (one file or shards named
//! in `model.safetensors.index.json`) and `tokenizer.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::{Loaded, apply_safetensors, mismatch};
use crate::chat::ChatTemplate;
use crate::config::HfLlamaConfig;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// The safetensors files of an HF directory: `model.safetensors`, or the shards named
/// in `model.safetensors.index.json`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::io(
            &single,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file, nor model.safetensors.index.json beside it",
            ),
        ));
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
    mismatch(&results, Some(dir), |_| true).into_result()?;
    let tokenizer = Tokenizer::from_file(
        &dir.join("tokenizer.json"),
        cfg.bos_token_id,
        cfg.eos_token_ids.clone(),
    )?;
    let chat_template = ChatTemplate::from_hf_dir(dir)?;
    Ok(Loaded {
        model,
        tokenizer,
        chat_template,
    })
}

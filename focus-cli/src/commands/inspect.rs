//! `focus inspect`: what a model file or directory holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use focus_model::gguf::GgufFile;
use focus_model::weights::gguf_config;
use focus_model::{HfLlamaConfig, LlamaConfig};

/// Show what a model holds.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An HF model directory or a GGUF file.
    pub model: PathBuf,
}

fn describe(cfg: &LlamaConfig) {
    println!("architecture     llama (decoder-only, RMSNorm, RoPE, GQA, SwiGLU)");
    println!("layers           {}", cfg.num_hidden_layers);
    println!(
        "hidden / ffn     {} / {}",
        cfg.hidden_size, cfg.intermediate_size
    );
    println!(
        "heads / kv heads {} / {} (head_dim {})",
        cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    );
    println!("vocabulary       {}", cfg.vocab_size);
    println!(
        "context          {} (rope theta {}{})",
        cfg.max_position_embeddings,
        cfg.rope_theta,
        if cfg.rope_scaling.is_some() {
            ", llama3 scaling"
        } else {
            ""
        }
    );
    println!(
        "embeddings       {}",
        if cfg.tie_word_embeddings {
            "tied"
        } else {
            "separate lm_head"
        }
    );
    println!("parameters       {}", cfg.num_params().unwrap_or_default());
    println!(
        "bos / eos        {} / {:?}",
        cfg.bos_token_id, cfg.eos_token_ids
    );
}

pub fn run(args: Args) -> Result<()> {
    let path = &args.model;
    if path.is_dir() {
        let cfg = HfLlamaConfig::from_file(&path.join("config.json"))?.resolve()?;
        println!("format           HF directory {}", path.display());
        describe(&cfg);
        let tok = path.join("tokenizer.json");
        println!(
            "tokenizer        {}",
            if tok.is_file() {
                "tokenizer.json"
            } else {
                "none"
            }
        );
    } else if path.is_file() {
        let g = GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
        println!(
            "format           GGUF v{} {} ({} tensors)",
            g.version,
            path.display(),
            g.tensors.len()
        );
        if let Some(name) = g.metadata.get("general.name").and_then(|v| v.as_str()) {
            println!("name             {name}");
        }
        describe(&gguf_config(&g)?);
        let mut types: BTreeMap<String, usize> = BTreeMap::new();
        for t in &g.tensors {
            *types.entry(format!("{:?}", t.ggml_type)).or_default() += 1;
        }
        let types: Vec<String> = types.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!("tensor types     {}", types.join(", "));
        let tok = g
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.as_str())
            .unwrap_or("none");
        let pre = g
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        println!("tokenizer        {tok} (pre-tokenizer {pre})");
    } else {
        bail!("{} not found", path.display());
    }
    Ok(())
}

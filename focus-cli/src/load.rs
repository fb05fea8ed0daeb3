//! Loading what a command reads: the model (with its candidate projections), the input's
//! token ids, text files; and the host-memory check before a long input.

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use focus_core::{DiskStore, FocusConfig};
use focus_model::{LlamaForCausalLM, Loaded, Message, load};
use sha2::{Digest, Sha256};

use crate::args::{InputArgs, ModelArgs, StoreArgs};

/// Builds the device and loads the model (with candidate projections when `focus`).
pub fn load_model(args: &ModelArgs, focus: bool) -> Result<(Loaded, Device)> {
    let mut device = args.device.device()?;
    crate::device::set_dtype(&mut device, args.dtype)?;
    if !args.model.exists() {
        bail!(
            "model {} not found (run scripts/fetch-assets.sh for the default model)",
            args.model.display()
        );
    }
    let mut loaded =
        load(&args.model, &device).with_context(|| format!("loading {}", args.model.display()))?;
    if focus {
        loaded.model = match &args.focus_weights {
            Some(p) => loaded.model.load_focus_weights(p)?,
            None => loaded.model.with_candidate_projections(),
        };
    } else if args.focus_weights.is_some() {
        bail!("--focus-weights has no effect with --no-focus");
    }
    if let Some(d) = args.chunk_cache_dtype {
        if !device.supports_dtype(d.burn()) {
            bail!(
                "--chunk-cache-dtype {}: this device does not support it",
                d.name()
            );
        }
        loaded.model = loaded.model.with_chunk_cache_dtype(d.burn());
    }
    Ok((loaded, device))
}

/// Reads a UTF-8 text file, or stdin for `-`.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    let bytes = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading stdin")?;
        b
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

impl InputArgs {
    /// The prompt as a chat: the text as the user's turn (after a `system` turn when given),
    /// with the assistant's turn opened, and where the turns after the first begin
    /// ([`focus_model::ChatTemplate::prompt_ids_and_starts`]).
    pub fn chat_ids(
        &self,
        loaded: &Loaded,
        system: Option<&str>,
    ) -> Result<(Vec<u32>, Vec<usize>)> {
        let Some(template) = &loaded.chat_template else {
            bail!("--chat: the model carries no chat template");
        };
        let text = match (&self.prompt, &self.prompt_file) {
            (Some(t), _) => t.clone(),
            (None, Some(p)) => read_text(p)?,
            _ => {
                bail!("--chat takes the text of a turn (--prompt or --prompt-file), not token ids")
            }
        };
        if text.trim().is_empty() {
            bail!("the prompt is empty");
        }
        let mut messages: Vec<Message> = system
            .map(|s| Message::new("system", s))
            .into_iter()
            .collect();
        messages.push(Message::new("user", text));
        Ok(template.prompt_ids_and_starts(&loaded.tokenizer, &messages)?)
    }

    /// The token ids of the input (BOS first when the text is tokenised).
    pub fn ids(&self, loaded: &Loaded) -> Result<Vec<u32>> {
        let ids = if let Some(path) = &self.prompt_ids {
            let text = read_text(path)?;
            let ids: Vec<u32> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON array of token ids", path.display()))?;
            let vocab = loaded.model.config().vocab_size;
            if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                bail!(
                    "token id {bad} in {} is outside the vocabulary ({vocab})",
                    path.display()
                );
            }
            ids
        } else {
            let text = match (&self.prompt, &self.prompt_file) {
                (Some(t), _) => t.clone(),
                (None, Some(p)) => read_text(p)?,
                _ => unreachable!("clap requires one input"),
            };
            loaded.tokenizer.encode_prompt(&text)?
        };
        let only_bos = self.prompt_ids.is_none() && ids == [loaded.tokenizer.bos_id()];
        if ids.is_empty() || only_bos {
            bail!("the prompt is empty");
        }
        Ok(ids)
    }
}

/// Bytes available to new allocations on this host (`MemAvailable`, Linux), if known.
fn host_available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Refuses inputs whose FocusLLM chunk caches (or full-attention cache) cannot fit in
/// host memory when the model runs on the CPU (`device` as [`load_model`] built it).
pub fn check_memory(
    model: &LlamaForCausalLM,
    focus: Option<&FocusConfig>,
    len: usize,
) -> Result<()> {
    let device = model.device();
    if !crate::device::is_cpu(&device) {
        return Ok(());
    }
    let config = model.config();
    let need = match focus {
        Some(f) => config.chunk_cache_bytes(f, len, model.chunk_cache_dtype().size()),
        None => {
            let bytes_per_value = focus_model::weights::float_dtype(&device).size();
            len * config.kv_bytes_per_position(bytes_per_value)
        }
    } as u64;
    if let Some(avail) = host_available_bytes()
        && need > avail
    {
        bail!(
            "an input of {len} tokens needs about {:.1} GB of key/value caches, more than the {:.1} GB of memory available",
            need as f64 / 1e9,
            avail as f64 / 1e9
        );
    }
    Ok(())
}

/// Opens the disk store `store` asks for, if any, for the model `args` names on `device`:
/// its entries are keyed by the SHA-256 of the model's files (a GGUF file, or a
/// directory's `config.json` and `*.safetensors`), the float type and the device (the chunk
/// keys and values depend on those, not on candidate weights).
pub fn open_store(
    store: &StoreArgs,
    args: &ModelArgs,
    device: &Device,
) -> Result<Option<DiskStore>> {
    let Some(dir) = &store.memory_dir else {
        return Ok(None);
    };
    let mut h = Sha256::new();
    h.update(b"focus chunk keys and values 1");
    hash_model(&mut h, &args.model)?;
    h.update(args.dtype.name());
    // The float type the entries are kept in (f32 entries and bf16 ones differ).
    h.update(args.chunk_cache_dtype.unwrap_or(args.dtype).name());
    h.update(format!("{device:?}"));
    DiskStore::open(dir, store.memory_disk_budget as u64, &h.finalize())
        .with_context(|| format!("--memory-dir {}", dir.display()))
        .map(Some)
}

/// Feeds the model's files to `h`: a GGUF file, or a directory's `config.json` and
/// `*.safetensors`, in name order.
pub fn hash_model(h: &mut Sha256, model: &std::path::Path) -> Result<()> {
    let mut files = if model.is_dir() {
        let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(model)
            .with_context(|| format!("reading {}", model.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        v.push(model.join("config.json"));
        v
    } else {
        vec![model.to_path_buf()]
    };
    files.sort();
    for f in &files {
        hash_file(h, f)?;
    }
    Ok(())
}

/// Feeds one file's bytes to `h`.
pub fn hash_file(h: &mut Sha256, path: &std::path::Path) -> Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

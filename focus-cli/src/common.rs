//! Options and steps shared by the subcommands: model loading, input, FocusLLM settings.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use focus_core::{Decode, FocusConfig};
use focus_model::{LlamaConfig, Loaded, Message, load};
use indicatif::{ProgressBar, ProgressStyle};

use crate::device::Dtype;

/// Model and device options.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: an HF directory (config.json, safetensors, tokenizer.json) or a GGUF file.
    #[arg(long, short, default_value = ".assets/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Trained candidate weights (safetensors): full projections in the reference key
    /// layout, or the low-rank updates `focus train --rank` writes. Without it the
    /// candidate projections are copies of the base projections.
    #[arg(long)]
    pub focus_weights: Option<PathBuf>,
    /// Device: auto (BURN_DEVICE if set, with the same names; else the CPU when it is
    /// compiled in), cpu, wgpu, vulkan, metal, cuda or cuda:N; only the backends compiled into
    /// this binary are available.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Float type of the computation (their accuracy: docs/backends.md).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

/// FocusLLM settings.
#[derive(clap::Args, Debug, Clone)]
pub struct FocusArgs {
    /// Local window W: the last W tokens are decoded normally [default: 2048, or a quarter of
    /// the model's context when that is smaller].
    #[arg(long)]
    pub local_window: Option<usize>,
    /// Chunk length S of the memory [default: the local window].
    #[arg(long)]
    pub chunk: Option<usize>,
    /// How many chunks run through the model in one batched pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Cap on the dynamic prompt length (512 in the paper).
    #[arg(long, default_value_t = 512)]
    pub prompt_cap: usize,
    /// The token between each chunk and its dynamic prompt: `bos` (the reference's
    /// choice), `eos` (the model's first end-of-sequence token) or a token id.
    #[arg(long, default_value = "bos")]
    pub separator: Separator,
    /// How tokens are decoded after the prefill: `exact` (the method: the local window is computed again
    /// at every token) or `cached-window` (approximate and faster: the window's keys and
    /// values are kept from the prefill; docs/serving.md has its measured cost).
    #[arg(long, value_enum, default_value_t = DecodeArg::Exact)]
    pub decoding: DecodeArg,
}

/// `--decoding`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeArg {
    Exact,
    CachedWindow,
}

impl From<DecodeArg> for Decode {
    fn from(d: DecodeArg) -> Self {
        match d {
            DecodeArg::Exact => Decode::Exact,
            DecodeArg::CachedWindow => Decode::CachedWindow,
        }
    }
}

/// `--separator`: the token between each chunk and its dynamic prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// The model's BOS, as the reference.
    Bos,
    /// The model's first end-of-sequence token.
    Eos,
    /// A token id.
    Id(u32),
}

impl std::str::FromStr for Separator {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "bos" => Ok(Self::Bos),
            "eos" => Ok(Self::Eos),
            other => other
                .parse()
                .map(Self::Id)
                .map_err(|_| format!("{other:?} is not bos, eos or a token id")),
        }
    }
}

impl Separator {
    /// The token for `model` (`None` is BOS).
    pub fn resolve(self, model: &LlamaConfig) -> Result<Option<u32>> {
        match self {
            Self::Bos => Ok(None),
            Self::Eos => match model.eos_token_ids.first() {
                Some(&id) => Ok(Some(id)),
                None => bail!("--separator eos: the model names no end-of-sequence token"),
            },
            Self::Id(id) if (id as usize) < model.vocab_size => Ok(Some(id)),
            Self::Id(id) => bail!(
                "--separator {id} is outside the vocabulary ({} tokens)",
                model.vocab_size
            ),
        }
    }
}

impl FocusArgs {
    /// Checked settings for `model`.
    pub fn config(&self, model: &LlamaConfig) -> Result<FocusConfig> {
        let mut cfg = self.shape(model.max_position_embeddings)?;
        cfg.separator = self.separator.resolve(model)?;
        Ok(cfg)
    }

    /// The settings checked against a context of `max_pos` positions, before a model is
    /// loaded (the separator left at BOS: its token depends on the model).
    pub fn shape(&self, max_pos: usize) -> Result<FocusConfig> {
        let local_window = self.local_window.unwrap_or(2048.min(max_pos / 4).max(1));
        let cfg = FocusConfig {
            local_window,
            chunk_len: self.chunk.unwrap_or(local_window),
            prompt_cap: self.prompt_cap,
            max_batch: self.batch,
            separator: None,
            decode: self.decoding.into(),
        };
        cfg.validate()?;
        if cfg.local_window > max_pos {
            bail!(
                "--local-window {} is larger than the model's context ({max_pos} positions)",
                cfg.local_window
            );
        }
        if cfg.chunk_len + cfg.prompt_len() + 1 > max_pos {
            bail!(
                "--chunk {} plus its dynamic prompt exceeds the model's context ({max_pos} positions)",
                cfg.chunk_len
            );
        }
        Ok(cfg)
    }
}

/// Builds the device and loads the model (with candidate projections when `focus`).
pub fn load_model(args: &ModelArgs, focus: bool) -> Result<(Loaded, Device)> {
    let mut device = crate::device::parse(&args.device)?;
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
    Ok((loaded, device))
}

/// Input options: text, a text file, or token ids.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct InputArgs {
    /// The prompt text.
    #[arg(long, short)]
    pub prompt: Option<String>,
    /// A file holding the prompt text (UTF-8); `-` reads stdin.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// A JSON file holding the prompt as an array of token ids.
    #[arg(long)]
    pub prompt_ids: Option<PathBuf>,
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
    /// with the assistant's turn opened ([`focus_model::ChatTemplate::prompt_ids`]).
    pub fn chat_ids(&self, loaded: &Loaded, system: Option<&str>) -> Result<Vec<u32>> {
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
        Ok(template.prompt_ids(&loaded.tokenizer, &messages)?)
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

/// A builder of temporary files that end up with the usual permissions once renamed into
/// place (`0o666` less the umask; tempfile's default is owner-only).
pub fn temp_file() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b
}

/// "cannot write PATH: the operating system's reason".
fn cannot_write(path: &std::path::Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot write {}: {}", path.display(), plain(e))
}

/// A temporary file (name ending in `suffix`) in the folder of `path`, to be renamed over it.
pub fn temp_beside(path: &std::path::Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    temp_file()
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| cannot_write(path, e))
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_beside(path, "")?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| cannot_write(path, e))?;
    tmp.persist(path).map_err(|e| cannot_write(path, e.error))?;
    Ok(())
}

/// Checks, before any work, that an output file can be written at `path`: not a folder, in
/// a folder where a file can be created. (The file itself is written atomically at the end.)
pub fn check_writable(path: &std::path::Path) -> Result<()> {
    if path.is_dir() {
        bail!("cannot write {}: it is a folder", path.display());
    }
    temp_beside(path, "")?;
    Ok(())
}

/// The operating system's message for `e`, without the temporary file's name that
/// `tempfile` adds to it.
pub fn plain(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    // tempfile wraps the operating system's error in a private type whose message ends with
    // ` at path "<temporary file>"`.
    let msg = e.to_string();
    match msg.split_once(" at path \"") {
        Some((os, _)) => std::io::Error::new(e.kind(), os.to_string()),
        None => e,
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
    device: &Device,
    model: &focus_model::LlamaConfig,
    focus: Option<&FocusConfig>,
    len: usize,
) -> Result<()> {
    if !crate::device::is_cpu(device) {
        return Ok(());
    }
    let bytes_per_value = focus_model::weights::float_dtype(device).size();
    let need = match focus {
        Some(f) => model.chunk_cache_bytes(f, len, bytes_per_value),
        None => len * model.kv_bytes_per_position(bytes_per_value),
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

/// A progress bar on stderr (hidden when `hidden`).
pub fn progress_bar(hidden: bool, unit: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{bar:30}} {{pos}}/{{len}} {unit} {{elapsed}} (eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Parses a token count: `512`, `2k`, `128K` (the arguments' value parser).
pub fn parse_len(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mul) = match t.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1024),
        None => (t, 1),
    };
    match num.parse::<usize>().ok().and_then(|n| n.checked_mul(mul)) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("bad length {s:?} (use e.g. 512, 2k, 128k)")),
    }
}

/// A token count as [`parse_len`] reads it, or `none`.
pub fn parse_len_or_none(s: &str) -> Result<Option<usize>, String> {
    match s.trim() {
        "none" => Ok(None),
        _ => parse_len(s).map(Some),
    }
}

/// Parses a byte count: `0`, `4096`, `512MiB`, `2GiB` (also `KiB`, `MB`, `GB`).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?} (use e.g. 512MiB, 2GiB)")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("bad byte count {s:?} (use e.g. 0, 512MiB, 2GiB)"))
}

/// How a command prints its results.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_with_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("3MB"), Ok(3_000_000));
        assert!(
            parse_bytes("2 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_bytes("GiB").is_err() && parse_bytes("-1").is_err());
    }
}

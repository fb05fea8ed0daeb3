//! The options the subcommands share (model and device, FocusLLM settings, input, output
//! format) and the parsers of their values.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use focus_core::{Decode, FocusConfig, PromptConfig};
use focus_model::{LlamaConfig, WeightSettings};

use crate::device::{DeviceName, Dtype};

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
    pub device: DeviceName,
    /// Float type of the computation (their accuracy: docs/backends.md).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Float type FocusLLM's chunk caches are kept in [default: --dtype]: f16 or bf16 halve
    /// their memory in an f32 computation (their accuracy: docs/benchmarks.md).
    #[arg(long, value_enum)]
    pub chunk_cache_dtype: Option<Dtype>,
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
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// How tokens are decoded after the prefill: `exact` (the method: the local window is computed again
    /// at every token) or `cached-window` (approximate and faster: the window's keys and
    /// values are kept from the prefill; docs/serving.md has its measured cost).
    #[arg(long, value_enum, default_value_t = DecodeArg::Exact)]
    pub decoding: DecodeArg,
}

/// The dynamic prompt's settings, shared by inference and training.
#[derive(clap::Args, Debug, Clone)]
pub struct PromptArgs {
    /// Cap on the dynamic prompt length [default: the cap the candidate weights record
    /// (`focus train` writes the one it trained with), else 512 as in the paper].
    #[arg(long)]
    pub prompt_cap: Option<usize>,
    /// The token between each chunk and its dynamic prompt: `bos` (the reference's
    /// choice), `eos` (the model's first end-of-sequence token) or a token id.
    #[arg(long, default_value = "bos")]
    pub separator: Separator,
}

impl PromptArgs {
    /// Takes the cap the candidate weights file `weights` records where `--prompt-cap` is
    /// not given.
    pub fn default_from(&mut self, weights: Option<&Path>) -> Result<()> {
        if let (None, Some(path)) = (self.prompt_cap, weights) {
            self.prompt_cap = WeightSettings::read(path)?.prompt_cap;
        }
        Ok(())
    }

    /// The settings for `model`.
    pub fn config(&self, model: &LlamaConfig) -> Result<PromptConfig> {
        Ok(PromptConfig {
            separator: self.separator.resolve(model)?,
            ..self.shape()
        })
    }

    /// The settings before a model is loaded (the separator left at BOS: its token depends
    /// on the model).
    pub fn shape(&self) -> PromptConfig {
        PromptConfig {
            cap: self.prompt_cap.unwrap_or(PromptConfig::default().cap),
            separator: None,
        }
    }
}

/// A prompt put as the user's turn of a chat (`generate`, `passkey`, `niah`).
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// Put the prompt as the user's turn of a chat, rendered with the model's own chat
    /// template, as a chat client would (the answer is the assistant's turn).
    #[arg(long)]
    pub chat: bool,
    /// A system turn before the user's (with `--chat`).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// How a chat's memory is cut (with `--chat`): `messages` starts a chunk at each turn of
    /// at least S tokens, so that a document's chunks do not depend on what came before it,
    /// as the server does (docs/design.md); `uniform` cuts every S tokens from the start, as
    /// the reference does.
    #[arg(long, value_enum, default_value = "messages", requires = "chat")]
    pub chunking: Chunking,
}

impl ChatArgs {
    /// Whether the memory is cut message by message.
    pub fn by_messages(&self) -> bool {
        self.chunking == Chunking::Messages
    }
}

/// `--chunking`: how a chat's memory is cut.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// A turn of at least S tokens starts a chunk of its own.
    Messages,
    /// Every S tokens from the start, as the reference.
    Uniform,
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
        cfg.prompt = self.prompt.config(model)?;
        Ok(cfg)
    }

    /// The settings checked against a context of `max_pos` positions, before a model is
    /// loaded (the separator left at BOS: its token depends on the model).
    pub fn shape(&self, max_pos: usize) -> Result<FocusConfig> {
        let local_window = self.local_window.unwrap_or(2048.min(max_pos / 4).max(1));
        let cfg = FocusConfig {
            local_window,
            chunk_len: self.chunk.unwrap_or(local_window),
            prompt: self.prompt.shape(),
            max_batch: self.batch,
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

/// The document memory on disk (`docs/serving.md`).
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Keep the keys and values of memory chunks in this folder, for later inputs and
    /// later processes running the same model file with the same device and float type
    /// (entries are keyed by those and the chunk's tokens, checked when read).
    #[arg(long)]
    pub memory_dir: Option<PathBuf>,
    /// Byte budget of --memory-dir, least recently used entries removed first. E.g. 8GiB.
    #[arg(long, default_value = "8GiB", value_parser = parse_bytes)]
    pub memory_disk_budget: usize,
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

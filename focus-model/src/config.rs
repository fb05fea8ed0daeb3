//! Model configuration: the HF `config.json` as written on disk, and the resolved,
//! validated [`LlamaConfig`] the model is built from.

use std::path::Path;

use burn::config::Config;
use serde::Deserialize;

use crate::error::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest context a configuration may claim (2^32 positions; the longest real models
/// have about 10^7).
pub const MAX_CONTEXT: usize = 1 << 32;

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5) as HF writes it.
/// Only the `llama3` type changes the frequencies.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HfRopeScaling {
    /// `"llama3"` (also accepted as `type`); `"default"` means none.
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Context-extension factor.
    #[serde(default)]
    pub factor: Option<f64>,
    /// Wavelengths shorter than `original / high_freq_factor` keep their frequency.
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    /// Wavelengths longer than `original / low_freq_factor` are divided by `factor`.
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    /// Context length of the original pre-training.
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    /// RoPE base (transformers 5 keeps it here).
    #[serde(default)]
    pub rope_theta: Option<f64>,
}

/// A Llama-family `config.json`, field for field (unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct HfLlamaConfig {
    /// `["LlamaForCausalLM"]` for the supported family.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `"llama"` (also accepted: `"mistral"` without sliding window, `"smollm"`).
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<HfRopeScaling>,
    #[serde(default)]
    pub rope_parameters: Option<HfRopeScaling>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_max_pos() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_act() -> String {
    "silu".into()
}

/// Frequency scaling of Llama 3.1 (`rope_scaling.rope_type == "llama3"`).
#[derive(Config, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Resolved decoder configuration: no optional fields, checked for consistency.
#[derive(Config, Debug, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    #[config(default = 8192)]
    pub max_position_embeddings: usize,
    #[config(default = 1e-5)]
    pub rms_norm_eps: f64,
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    #[config(default = "None")]
    pub rope_scaling: Option<Llama3Scaling>,
    #[config(default = true)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id (FocusLLM inserts it before each dynamic prompt).
    #[config(default = 1)]
    pub bos_token_id: u32,
    /// End-of-sequence token ids (generation stops on any of them).
    #[config(default = "vec![2]")]
    pub eos_token_ids: Vec<u32>,
}

fn json_ids(v: &Option<serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|x| vec![x as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

impl HfLlamaConfig {
    /// Reads `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Checks that this is a plain Llama-family decoder and resolves defaults.
    pub fn resolve(&self) -> Result<LlamaConfig> {
        let arch_ok = self.architectures.is_empty()
            || self
                .architectures
                .iter()
                .any(|a| a == "LlamaForCausalLM" || a == "MistralForCausalLM");
        let type_ok = matches!(
            self.model_type.as_deref(),
            None | Some("llama") | Some("mistral")
        );
        if !arch_ok || !type_ok {
            return Err(Error::Unsupported(format!(
                "architecture {:?} (model_type {:?}); only Llama-family decoders are supported",
                self.architectures, self.model_type
            )));
        }
        if self.attention_bias || self.mlp_bias {
            return Err(Error::Unsupported("attention or MLP biases".into()));
        }
        if self.hidden_act != "silu" {
            return Err(Error::Unsupported(format!(
                "activation {:?}",
                self.hidden_act
            )));
        }
        let rope = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let rope_theta = rope.and_then(|r| r.rope_theta).unwrap_or(self.rope_theta);
        let rope_scaling = match rope {
            None => None,
            Some(s) if s.rope_type == "default" => None,
            Some(s) if s.rope_type == "llama3" => Some(Llama3Scaling {
                factor: s.factor.unwrap_or(8.0),
                low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                original_max_position_embeddings: s
                    .original_max_position_embeddings
                    .unwrap_or(8192),
            }),
            Some(s) => {
                return Err(Error::Unsupported(format!(
                    "rope_scaling type {:?}",
                    s.rope_type
                )));
            }
        };
        let heads = self.num_attention_heads;
        let cfg = LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(heads),
            head_dim: match self.head_dim {
                Some(d) => d,
                None if heads > 0 && !self.hidden_size.is_multiple_of(heads) => {
                    return Err(Error::Config(format!(
                        "hidden_size {} is not a multiple of num_attention_heads {heads} \
                         (and no head_dim is given)",
                        self.hidden_size
                    )));
                }
                None => self.hidden_size.checked_div(heads).unwrap_or(0),
            },
            max_position_embeddings: self.max_position_embeddings,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: self.tie_word_embeddings,
            bos_token_id: json_ids(&self.bos_token_id).first().copied().unwrap_or(1),
            eos_token_ids: {
                let e = json_ids(&self.eos_token_id);
                if e.is_empty() { vec![2] } else { e }
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl LlamaConfig {
    /// SmolLM2-135M's shape (the default model), for benchmarks on random weights.
    pub fn smollm2_135m() -> Self {
        Self::new(49152, 576, 1536, 30, 9, 3, 64)
            .with_rope_theta(100_000.0)
            .with_bos_token_id(1)
            .with_eos_token_ids(vec![2])
    }

    /// A 1B-class Llama shape (Llama-3.2-1B), for benchmarks on random weights.
    pub fn llama_1b() -> Self {
        Self::new(128_256, 2048, 8192, 16, 32, 8, 64)
            .with_rope_theta(500_000.0)
            .with_max_position_embeddings(131_072)
            .with_rope_scaling(Some(Llama3Scaling::new(32.0, 1.0, 4.0, 8192)))
    }

    /// Checks the internal consistency of the shape.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return bad("vocab_size, hidden_size and num_hidden_layers must be positive".into());
        }
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return bad("head counts must be positive".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        let vocab = self.vocab_size;
        if let Some(id) = std::iter::once(&self.bos_token_id)
            .chain(&self.eos_token_ids)
            .find(|&&id| id as usize >= vocab)
        {
            return bad(format!(
                "special token id {id} lies outside the vocabulary of {vocab}"
            ));
        }
        if self.intermediate_size == 0 {
            return bad("intermediate_size must be positive".into());
        }
        if self.max_position_embeddings == 0 || self.max_position_embeddings > MAX_CONTEXT {
            return bad(format!(
                "max_position_embeddings {} is outside 1..={MAX_CONTEXT}",
                self.max_position_embeddings
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!(
                "rope_theta {} must be finite and above 1",
                self.rope_theta
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!(
                "rms_norm_eps {} must be finite and positive",
                self.rms_norm_eps
            ));
        }
        if let Some(s) = &self.rope_scaling {
            let finite = [s.factor, s.low_freq_factor, s.high_freq_factor];
            if finite.iter().any(|x| !(x.is_finite() && *x > 0.0))
                || s.high_freq_factor <= s.low_freq_factor
                || s.original_max_position_embeddings == 0
            {
                return bad(format!(
                    "llama3 rope scaling {s:?}: factors must be positive and finite, \
                     high_freq_factor above low_freq_factor, the original context positive"
                ));
            }
        }
        if self.num_params().is_none() {
            return bad("the parameter count overflows".into());
        }
        Ok(())
    }

    /// The number of parameters, or `None` if it does not fit in a `u64`.
    pub fn num_params(&self) -> Option<u64> {
        let n = |x: usize| u64::try_from(x).ok();
        let (d, ff, v) = (
            n(self.hidden_size)?,
            n(self.intermediate_size)?,
            n(self.vocab_size)?,
        );
        let q = n(self.num_attention_heads)?.checked_mul(n(self.head_dim)?)?;
        let kv = n(self.num_key_value_heads)?.checked_mul(n(self.head_dim)?)?;
        // q and o, k and v, gate/up/down, two norms.
        let layer = [
            d.checked_mul(q)?.checked_mul(2)?,
            d.checked_mul(kv)?.checked_mul(2)?,
            d.checked_mul(ff)?.checked_mul(3)?,
            d.checked_mul(2)?,
        ]
        .into_iter()
        .try_fold(0u64, u64::checked_add)?;
        let embed = v.checked_mul(d)?;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        layer
            .checked_mul(n(self.num_hidden_layers)?)?
            .checked_add(embed)?
            .checked_add(head)?
            .checked_add(d)
    }

    /// Checks, before anything is allocated, that weight files of `bytes` bytes in all can
    /// hold this model: every format stores a parameter in at least two bits (the smallest
    /// GGUF k-quant), so a configuration claiming more is refused at once.
    pub fn check_fits(&self, bytes: u64, what: &Path) -> Result<()> {
        let params = self.num_params().unwrap_or(u64::MAX);
        if params / 4 > bytes {
            return Err(Error::Config(format!(
                "the configuration describes {params} parameters, more than {} ({bytes} \
                 bytes) can hold",
                what.display()
            )));
        }
        Ok(())
    }

    /// Bytes of keys and values one position takes in every layer's cache, at
    /// `bytes_per_value` bytes per number.
    pub fn kv_bytes_per_position(&self, bytes_per_value: usize) -> usize {
        self.num_hidden_layers * 2 * self.num_key_value_heads * self.head_dim * bytes_per_value
    }

    /// Bytes the FocusLLM chunk caches take for an input of `len` tokens read with `focus`:
    /// every memory token and each chunk's dynamic prompt, `sum_j (s_j + p)` positions.
    pub fn chunk_cache_bytes(
        &self,
        focus: &focus_core::FocusConfig,
        len: usize,
        bytes_per_value: usize,
    ) -> usize {
        focus.cached_positions(len) * self.kv_bytes_per_position(bytes_per_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_of_the_default_model() {
        let cfg = LlamaConfig::smollm2_135m();
        // 30 layers x (K and V) x 3 heads x 64 dims x 4 bytes.
        assert_eq!(cfg.kv_bytes_per_position(4), 46_080);
        // 10,000 tokens, W = S = 2048, p = 512: 7,952 memory tokens in 4 chunks, each with
        // a 512-token prompt: 10,000 positions.
        let focus = focus_core::FocusConfig::default();
        assert_eq!(cfg.chunk_cache_bytes(&focus, 10_000, 4), 10_000 * 46_080);
        assert_eq!(cfg.chunk_cache_bytes(&focus, 2_048, 4), 0, "no memory");
        // 135M parameters with tied embeddings (SmolLM2-135M's published count: 134,515,008).
        assert_eq!(cfg.num_params(), Some(134_515_008));
    }
}

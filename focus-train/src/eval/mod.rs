//! Evaluation protocols shared by the CLI and the training loop: perplexity
//! ([`ppl`]) and retrieval from long inputs ([`retrieval`]: passkey, needle in a
//! haystack), each run with FocusLLM memory or a baseline ([`Mode`]); [`probe`] reads a
//! key chunk's own prediction beside FocusLLM's, to see where retrieval breaks.

pub mod ppl;
pub mod probe;
pub mod retrieval;

use burn::prelude::*;
use focus_core::{FocusConfig, Session};
use focus_model::model::ids_tensor;
use focus_model::{LlamaForCausalLM, Rows};

use crate::error::{Error, Result};

/// How the model sees a long input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// FocusLLM: memory chunks decoded in parallel, then the local window.
    Focus(FocusConfig),
    /// The truncated-context baseline: BOS and the last `window` tokens only (the local
    /// pass of FocusLLM without candidates).
    Truncated(usize),
    /// The plain decoder with full attention over the whole input; only up to the
    /// model's context length.
    Full,
}

impl Mode {
    /// Short name used in tables and JSON: `focus`, `truncated` or `full`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Focus(_) => "focus",
            Self::Truncated(_) => "truncated",
            Self::Full => "full",
        }
    }

    /// Whether an input of `len` tokens followed by `extra` more fits this mode on `model`
    /// (full attention is limited to the model's positions).
    pub fn fits(&self, model: &LlamaForCausalLM, len: usize, extra: usize) -> bool {
        let max = model.config().max_position_embeddings;
        match self {
            Self::Focus(_) => true,
            Self::Truncated(w) => (*w).min(len) + 1 + extra <= max,
            Self::Full => len + 1 + extra <= max,
        }
    }

    /// The settings and the part of `ids` a [`Session`] runs for this mode.
    pub(crate) fn session_input<'a>(&self, ids: &'a [u32]) -> (FocusConfig, &'a [u32]) {
        match *self {
            Self::Focus(cfg) => (cfg, ids),
            Self::Truncated(w) => {
                let kept = &ids[ids.len().saturating_sub(w)..];
                (FocusConfig::new(kept.len().max(1), kept.len().max(1)), kept)
            }
            Self::Full => (FocusConfig::new(ids.len().max(1), ids.len().max(1)), ids),
        }
    }
}

/// Natural-log softmax cross-entropy of `target` under one row of logits.
pub fn token_nll(logits: &[f32], target: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    (sum.ln() + f64::from(max) - f64::from(logits[target as usize])) as f32
}

pub(crate) fn row_vec(logits: Tensor<2>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float logits")
}

fn check_ids(model: &LlamaForCausalLM, ids: &[u32]) -> Result<()> {
    let vocab = model.config().vocab_size;
    if ids.is_empty() {
        return Err(Error::Input("empty input".into()));
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(Error::Input(format!(
            "token id {bad} is outside the vocabulary ({vocab})"
        )));
    }
    Ok(())
}

/// Greedy continuation of `ids` by up to `n` tokens (stopping after any of `eos`).
pub fn generate(
    model: &LlamaForCausalLM,
    mode: Mode,
    ids: &[u32],
    n: usize,
    eos: &[u32],
    progress: impl FnMut(usize, usize),
) -> Result<Vec<u32>> {
    check_ids(model, ids)?;
    let bos = model.config().bos_token_id;
    let (cfg, input) = mode.session_input(ids);
    let (mut session, logits) = Session::prefill(model, &cfg, bos, input, progress)?;
    let mut out = Vec::with_capacity(n);
    let mut logits = row_vec(logits);
    while out.len() < n {
        let token = focus_core::sample::argmax(&logits);
        out.push(token);
        if eos.contains(&token) || out.len() == n {
            break;
        }
        logits = row_vec(session.step(token));
    }
    Ok(out)
}

/// Negative log-likelihood (nats) of each of `targets` following `context`, teacher-forced.
///
/// FocusLLM scores the first target from the prefill logits and every further one
/// through a decode step (spec §5.1). The baselines run one forward pass over
/// `[BOS] ‖ kept context ‖ targets[..n-1]` and score the last `n` rows, which is the same
/// computation without a cache.
pub fn nll(
    model: &LlamaForCausalLM,
    mode: Mode,
    context: &[u32],
    targets: &[u32],
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    check_ids(model, context)?;
    check_ids(model, targets)?;
    let bos = model.config().bos_token_id;
    let (cfg, input) = mode.session_input(context);
    if let Mode::Focus(_) = mode
        && input.len() > cfg.local_window
    {
        let (mut session, logits) = Session::prefill(model, &cfg, bos, input, &mut progress)?;
        let mut out = vec![token_nll(&row_vec(logits), targets[0])];
        for (i, w) in targets.windows(2).enumerate() {
            out.push(token_nll(&row_vec(session.step(w[0])), w[1]));
            progress(i + 2, targets.len());
        }
        return Ok(out);
    }
    let mut ids = Vec::with_capacity(input.len() + targets.len() + 1);
    if input[0] != bos {
        ids.push(bos);
    }
    ids.extend_from_slice(input);
    ids.extend_from_slice(&targets[..targets.len() - 1]);
    let max = model.config().max_position_embeddings;
    if ids.len() > max {
        return Err(Error::Input(format!(
            "{} positions do not fit the model's {max} with {} attention",
            ids.len(),
            mode.name()
        )));
    }
    Ok(plain_nll(model, &ids, targets))
}

/// NLL of `targets` as the continuation of the last `targets.len()` rows of `ids`, in one
/// forward pass of the plain decoder on exactly `ids` (no BOS added).
pub fn plain_nll(model: &LlamaForCausalLM, ids: &[u32], targets: &[u32]) -> Vec<f32> {
    let device = model.device();
    let n = targets.len();
    let t = ids.len();
    let f = model.forward(ids_tensor(ids, &device), 0, None, Rows::Plain);
    let logits = model.logits(f.hidden.narrow(1, t - n, n));
    let logp = burn::tensor::activation::log_softmax(logits, 2);
    let idx = ids_tensor(targets, &device).reshape([1, n, 1]);
    let picked = logp.gather(2, idx).reshape([n]);
    picked
        .neg()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float values")
}

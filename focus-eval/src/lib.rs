//! `focus-eval`: the evaluation protocols of FocusLLM, each run with FocusLLM memory or a
//! baseline ([`Reading`]).
//!
//! - [`ppl`]: perplexity of long texts (the paper's protocol and llama.cpp's).
//! - [`retrieval`]: passkey and needle-in-a-haystack retrieval.
//! - [`reserved`]: the held-out haystack and templates that training may not read.
//! - [`probe`]: a key chunk's own prediction beside FocusLLM's, to see where retrieval
//!   breaks.

pub mod error;
pub mod ppl;
pub mod probe;
pub mod reserved;
pub mod retrieval;

use focus_core::{ChunkMemory, CondensingModel, Reading, Sampler, Session};
use focus_model::model::ids_tensor;
use focus_model::{LlamaForCausalLM, Rows};

pub use error::{Error, Result};

/// Natural-log softmax cross-entropy of `target` under one row of logits.
pub fn token_nll(logits: &[f32], target: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    (sum.ln() + f64::from(max) - f64::from(logits[target as usize])) as f32
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

/// Greedy continuation of `ids` (made of pieces that begin at `starts`: a chat's messages,
/// or none) by up to `n` tokens (stopping after any of `eos`), and the seconds the read
/// (the prefill, up to the first token's logits) took.
pub fn generate(
    model: &LlamaForCausalLM,
    reading: Reading,
    ids: &[u32],
    starts: &[usize],
    n: usize,
    eos: &[u32],
    progress: impl FnMut(usize, usize),
) -> Result<(Vec<u32>, f64)> {
    check_ids(model, ids)?;
    let bos = model.config().bos_token_id;
    let mut none = ChunkMemory::new(0);
    let t0 = std::time::Instant::now();
    let (mut session, logits) =
        Session::read_with_memory(model, reading, bos, ids, starts, &mut none, progress)?;
    let row = model.logits_row(logits);
    let read = t0.elapsed().as_secs_f64();
    Ok((
        session.generate(row, &mut Sampler::Greedy, n, eos, |_| true),
        read,
    ))
}

/// Negative log-likelihood (nats) of each of `targets` following `context`, teacher-forced.
///
/// FocusLLM scores the first target from the prefill logits and every further one
/// through a decode step (spec §5.1). A reading without memory runs one forward pass over
/// its input ([`Reading::plain_input`]) followed by `targets[..n-1]` and scores the last `n`
/// rows, which is the same computation without a cache.
pub fn nll(
    model: &LlamaForCausalLM,
    reading: Reading,
    context: &[u32],
    targets: &[u32],
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    check_ids(model, context)?;
    check_ids(model, targets)?;
    let bos = model.config().bos_token_id;
    let Some(mut ids) = reading.plain_input(context, bos) else {
        let (mut session, logits) = Session::read(model, reading, bos, context, &mut progress)?;
        let mut out = vec![token_nll(&model.logits_row(logits), targets[0])];
        for (i, w) in targets.windows(2).enumerate() {
            out.push(token_nll(&model.logits_row(session.step(w[0])), w[1]));
            progress(i + 2, targets.len());
        }
        return Ok(out);
    };
    ids.extend_from_slice(&targets[..targets.len() - 1]);
    let max = model.config().max_position_embeddings;
    if ids.len() > max {
        return Err(Error::Input(format!(
            "{} positions do not fit the model's {max} with {} attention",
            ids.len(),
            reading.name()
        )));
    }
    Ok(plain_nll(model, &ids, targets))
}

/// NLL of `targets` as the continuation of the last `targets.len()` rows of `ids`, in one
/// forward pass of the plain decoder on exactly `ids` (no BOS added).
pub fn plain_nll(model: &LlamaForCausalLM, ids: &[u32], targets: &[u32]) -> Vec<f32> {
    let device = model.device();
    let n = targets.len();
    let f = model.forward_last(ids_tensor(ids, &device), 0, None, Rows::Plain, n);
    let logits = model.logits(f.hidden);
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

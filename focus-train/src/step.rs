//! The training loss of one example (spec §4.3), computed the cheap way (spec §8.2).
//!
//! The chunk tokens and the `[BOS ‖ prompt]` rows before each candidate depend only on
//! frozen weights, so their keys and values come from a pass without autodiff. The
//! graph then holds one candidate row per chunk (through the candidate projections, in
//! every layer, over those cached keys) and the local pass, whose last row predicts the
//! token after the local span.

use burn::prelude::*;
use focus_core::CondensingModel;
use focus_model::model::ids_tensor;
use focus_model::{Candidates, LayerKv, LlamaForCausalLM, Rows};

use crate::sample::Example;

/// The chunk inputs of `ex` without their candidate token, grouped by length, and the
/// candidate token (the last token of the local span).
fn chunk_rows(x: &[u32], ex: &Example, bos: u32) -> (Vec<Vec<Vec<u32>>>, u32) {
    let end = ex.start + ex.len;
    let prompt = &x[end - ex.prompt_len..end];
    let mut groups: Vec<Vec<Vec<u32>>> = Vec::new();
    for j in 0..ex.num_chunks() {
        let lo = j * ex.chunk_len;
        let hi = ((j + 1) * ex.chunk_len).min(ex.memory_end);
        let mut row = Vec::with_capacity(hi - lo + prompt.len());
        row.extend_from_slice(&x[lo..hi]);
        row.push(bos);
        row.extend_from_slice(&prompt[..prompt.len() - 1]);
        match groups.last_mut() {
            Some(g) if g[0].len() == row.len() => g.push(row),
            _ => groups.push(vec![row]),
        }
    }
    (groups, prompt[prompt.len() - 1])
}

/// The local input: BOS and the local span (BOS not doubled when the span starts with it).
pub fn local_input(x: &[u32], ex: &Example, bos: u32) -> Vec<u32> {
    let span = &x[ex.start..ex.start + ex.len];
    let mut v = Vec::with_capacity(span.len() + 1);
    if span.first() != Some(&bos) {
        v.push(bos);
    }
    v.extend_from_slice(span);
    v
}

fn flat_ids(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    ids_tensor(&flat, device).reshape([rows.len(), rows[0].len()])
}

/// Cross-entropy (nats) of the example's target, as a one-element tensor on `model`'s
/// device (tracked when `model` is on an autodiff device).
///
/// `frozen` is the same decoder without autodiff; only its base weights are used.
pub fn example_loss(
    model: &LlamaForCausalLM,
    frozen: &LlamaForCausalLM,
    x: &[u32],
    ex: &Example,
) -> Tensor<1> {
    let bos = model.config().bos_token_id;
    let device = model.device();
    let track = device.is_autodiff();
    let (groups, candidate) = chunk_rows(x, ex, bos);
    let mut cands: Vec<Candidates> = Vec::with_capacity(groups.len());
    for rows in &groups {
        let n = rows[0].len();
        let f = frozen.forward(flat_ids(rows, &frozen.device()), 0, None, Rows::Plain);
        let past: Vec<LayerKv> = f
            .new_kv
            .into_iter()
            .map(|kv| {
                let (k, v) = if track {
                    (kv.k_rot.autodiff(), kv.v.autodiff())
                } else {
                    (kv.k_rot, kv.v)
                };
                LayerKv { k, v }
            })
            .collect();
        let ids = ids_tensor(&vec![candidate; rows.len()], &device).reshape([rows.len(), 1]);
        let f = model.forward(ids, n, Some(&past), Rows::LastIsCandidate);
        cands.push(Candidates(
            f.new_kv
                .into_iter()
                .map(|kv| (kv.cand_k.expect("candidate rows"), kv.v))
                .collect(),
        ));
    }
    let refs: Vec<&Candidates> = cands.iter().collect();
    let logits = model.local_pass(&refs, &local_input(x, ex, bos));
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    let target = ids_tensor(&[ex.target(x)], &device);
    logp.gather(1, target).neg().reshape([1])
}

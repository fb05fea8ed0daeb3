//! The training loss of one example (spec §4.3), computed the cheap way (spec §8.2), for
//! one or several supervised tokens after the local span.
//!
//! The example is a focus-core [`Plan`]: the same chunks, dynamic prompt and local window
//! as inference. Target `t` (0-based) is predicted the way decoding step `t` predicts it
//! (spec §3.2): every chunk has been fed `prompt ‖ y_1..y_t` with the base projections,
//! except its newest token, which is the candidate (the last prompt token for `t = 0`,
//! `y_t` after); the local pass reads `[BOS] ‖ span ‖ y_1..y_t` after those candidates.
//! Candidate `t` never sees `y_{t+1}`, so several targets cost no leakage. An example that
//! has decoded `D` tokens before its targets ([`Example::decoded`]) supervises steps
//! `D, D + 1, …` only: the earlier tokens are fed, never predicted.
//!
//! Everything before the candidate rows depends only on frozen weights: one pass without
//! autodiff computes those keys and values (chunk tokens, prompt, earlier targets), and the
//! chunk tokens' part is shared through a [`ChunkKvCache`] by the examples of a document.
//! The graph holds only the candidate rows (one per chunk and target, through the
//! candidate projections, in every layer) and the local passes.

use burn::prelude::*;
use focus_core::{ChunkMemory, CondensingModel, FocusConfig, Plan, PromptConfig, window_input};
use focus_model::model::ids_tensor;
use focus_model::{Candidates, LayerKv, LlamaForCausalLM, Rows};

use crate::example::{Example, LossKind};

impl Example {
    /// The example as a plan over `x`: memory `x[..memory_end]`, local window the span,
    /// dynamic prompt `p = min(cap, S, ℓ)` after the separator (BOS when `None`).
    pub fn plan(&self, x: &[u32], prompt: PromptConfig, bos: u32) -> Plan {
        let cfg = FocusConfig {
            prompt,
            max_batch: usize::MAX,
            ..FocusConfig::new(self.len, self.chunk_len)
        };
        Plan::with_memory(
            x,
            self.memory_end,
            self.start..self.start + self.len,
            &cfg,
            bos,
        )
        .expect("sampled examples lie inside their sequence")
    }
}

/// Frozen readings shared by the examples of one document: the keys and values of chunk
/// tokens, in a focus-core [`ChunkMemory`] (keyed by the chunk's tokens, least recently used
/// out) filled by the model's own [`CondensingModel::chunk_kv`], its budget counted in chunk
/// tokens; and the full-attention reading of the latest document (see
/// [`LossOptions::distill`]).
#[derive(Debug)]
pub struct ChunkKvCache {
    chunks: ChunkMemory<Vec<LayerKv>>,
    full: Option<FullReading>,
}

/// The frozen model's last hidden rows over `x[offset..]` for document `x`, as far as it
/// was read, after BOS when the reading starts inside the document
/// ([`focus_core::window_input`]; `lead` is 1 then, else 0).
#[derive(Debug)]
struct FullReading {
    doc: Vec<u32>,
    offset: usize,
    lead: usize,
    hidden: Tensor<2>,
}

impl ChunkKvCache {
    /// A cache of at most `capacity` chunk tokens (0: no chunk is kept).
    pub fn new(capacity: usize) -> Self {
        Self {
            chunks: ChunkMemory::new(capacity),
            full: None,
        }
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> usize {
        self.chunks.hits
    }

    /// The keys and values (per layer, `[1, kv_heads, len, head_dim]`) of `chunk`.
    fn get(&mut self, frozen: &LlamaForCausalLM, chunk: &[u32]) -> Vec<LayerKv> {
        if let Some(kv) = self.chunks.get(chunk) {
            return kv;
        }
        let kv = frozen.chunk_kv(&[chunk]).pop().expect("one chunk");
        self.chunks.insert(chunk.to_vec(), kv.clone(), chunk.len());
        kv
    }

    /// The frozen model's full-attention log-probabilities (`[rows.len(), vocab]`) of the
    /// tokens after `x[i]` for each `i` in `rows`: it reads the last
    /// `max_position_embeddings − 1` tokens of the document `x`, after BOS when that cuts
    /// the document's start (all of it, as given, when shorter;
    /// those ending at `rows.end` when the rows lie before them). One pass per document,
    /// kept for its other examples; also the rows it read, when it was made.
    fn full_logp(
        &mut self,
        frozen: &LlamaForCausalLM,
        x: &[u32],
        rows: std::ops::Range<usize>,
    ) -> (Tensor<2>, usize) {
        let mut read = 0;
        let covered = |f: &FullReading| {
            f.doc == x
                && f.offset <= rows.start
                && rows.end + f.lead <= f.offset + f.hidden.dims()[0]
        };
        if !self.full.as_ref().is_some_and(covered) {
            let context = frozen.config().max_position_embeddings - 1;
            let mut stop = x.len();
            if stop.saturating_sub(context) > rows.start {
                stop = rows.end;
            }
            let offset = stop.saturating_sub(context);
            let bos = frozen.config().bos_token_id;
            let ids = window_input(&x[offset..stop], offset > 0, bos);
            let lead = ids.len() - (stop - offset);
            read = ids.len();
            let f = frozen.forward(ids_tensor(&ids, &frozen.device()), 0, None, Rows::Plain);
            let [_, n, d] = f.hidden.dims();
            self.full = Some(FullReading {
                doc: x.to_vec(),
                offset,
                lead,
                hidden: f.hidden.reshape([n, d]),
            });
        }
        let full = self.full.as_ref().expect("just read");
        // x[i] sits at row i − offset + lead (after BOS when it was added).
        let hidden =
            full.hidden
                .clone()
                .narrow(0, rows.start - full.offset + full.lead, rows.len());
        (log_probs(frozen, hidden.unsqueeze()), read)
    }
}

/// The frozen model's log-probabilities (`[k, vocab]`) of the tokens after the last `k`
/// tokens of `local`, reading `local` alone.
fn window_logp(frozen: &LlamaForCausalLM, local: &[u32], k: usize) -> Tensor<2> {
    let ids = ids_tensor(local, &frozen.device());
    let f = frozen.forward_last(ids, 0, None, Rows::Plain, k);
    log_probs(frozen, f.hidden)
}

/// Next-token log-probabilities (`[k, vocab]`) from last hidden rows `[1, k, hidden]`.
fn log_probs(frozen: &LlamaForCausalLM, hidden: Tensor<3>) -> Tensor<2> {
    let [_, k, _] = hidden.dims();
    let logits = frozen
        .logits(hidden)
        .reshape([k, frozen.config().vocab_size]);
    burn::tensor::activation::log_softmax(logits, 1)
}

fn flat_ids(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    ids_tensor(&flat, device).reshape([rows.len(), rows[0].len()])
}

fn cat_layers(per_chunk: Vec<Vec<LayerKv>>) -> Vec<LayerKv> {
    let layers = per_chunk[0].len();
    (0..layers)
        .map(|l| LayerKv {
            k: Tensor::cat(per_chunk.iter().map(|c| c[l].k.clone()).collect(), 0),
            v: Tensor::cat(per_chunk.iter().map(|c| c[l].v.clone()).collect(), 0),
        })
        .collect()
}

/// Sizes of the parts of one example's work, in tokens (for the time split and the log).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// Chunk tokens run through the frozen model (cache misses).
    pub chunk_tokens: usize,
    /// Chunk tokens answered by the cache.
    pub cached_tokens: usize,
    /// Prompt and earlier-target rows after the chunks (frozen).
    pub prompt_tokens: usize,
    /// Candidate rows (tracked).
    pub candidate_rows: usize,
    /// Local-pass rows (tracked; with the window anchor, also its frozen rows).
    pub local_tokens: usize,
    /// Rows of the frozen full-attention readings (distillation, held-out log).
    pub full_tokens: usize,
    /// Supervised tokens.
    pub targets: usize,
    /// Seconds in the frozen passes (chunk tokens, prompt rows, the window and full
    /// readings).
    pub frozen_seconds: f64,
    /// Seconds in the tracked forward passes (candidate rows, local passes).
    pub tracked_seconds: f64,
}

impl Work {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Work) {
        self.chunk_tokens += other.chunk_tokens;
        self.cached_tokens += other.cached_tokens;
        self.prompt_tokens += other.prompt_tokens;
        self.candidate_rows += other.candidate_rows;
        self.local_tokens += other.local_tokens;
        self.full_tokens += other.full_tokens;
        self.targets += other.targets;
        self.frozen_seconds += other.frozen_seconds;
        self.tracked_seconds += other.tracked_seconds;
    }

    /// Tokens the model read (chunk tokens counted once, whether cached or not).
    pub fn tokens_read(&self) -> usize {
        self.chunk_tokens
            + self.cached_tokens
            + self.prompt_tokens
            + self.local_tokens
            + self.full_tokens
    }
}

/// How one example's loss is taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossOptions {
    /// The dynamic prompt of every chunk.
    pub prompt: PromptConfig,
    /// Weight λ of the window anchor on continuation examples (0: off; see
    /// [`TrainConfig::anchor`](crate::TrainConfig::anchor)).
    pub anchor: f64,
    /// Also read the targets of continuation examples from the local window alone (for
    /// the held-out log), even when the anchor is off.
    pub window: bool,
    /// Weight μ of the full-attention distillation on continuation examples (0: off; see
    /// [`TrainConfig::distill`](crate::TrainConfig::distill)).
    pub distill: f64,
    /// Also read the targets of continuation examples with full attention (for the
    /// held-out log), even when the distillation is off.
    pub full: bool,
}

impl Default for LossOptions {
    /// The reference's settings: prompt cap 512, BOS separator, no anchor.
    fn default() -> Self {
        Self {
            prompt: PromptConfig::default(),
            anchor: 0.0,
            window: false,
            distill: 0.0,
            full: false,
        }
    }
}

/// The figures of one example's loss and what it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExampleLoss {
    /// Mean cross-entropy of the targets (nats).
    pub nll: f64,
    /// Mean cross-entropy of the same targets read from the local window alone by the
    /// frozen model (the truncated baseline), when it was computed.
    pub window_nll: Option<f64>,
    /// Mean KL(q ‖ p) between that reading and FocusLLM's, when it was computed.
    pub kl: Option<f64>,
    /// Mean cross-entropy of the same targets read by the frozen model with full attention
    /// over the document (the full baseline), when it was computed.
    pub full_nll: Option<f64>,
    /// Mean KL(q_full ‖ p) between that reading and FocusLLM's, when it was computed.
    pub kl_full: Option<f64>,
    /// The work it took.
    pub work: Work,
}

/// The loss of example `ex` of sequence `x`: what is minimised (the mean cross-entropy of
/// the targets, plus λ times the mean KL(q ‖ p) of the window anchor and μ times the mean
/// KL(q_full ‖ p) of the distillation on continuation examples), a one-element tensor on `model`'s device (tracked when that device has
/// autodiff), and its figures.
///
/// `frozen` is the same decoder without autodiff; only its base weights are used.
pub fn example_loss_with(
    model: &LlamaForCausalLM,
    frozen: &LlamaForCausalLM,
    x: &[u32],
    ex: &Example,
    opts: &LossOptions,
    cache: &mut ChunkKvCache,
) -> (Tensor<1>, ExampleLoss) {
    let bos = model.config().bos_token_id;
    let device = model.device();
    let track = device.is_autodiff();
    let plan = ex.plan(x, opts.prompt, bos);
    let end = ex.start + ex.len;
    let (d, k) = (ex.decoded, ex.targets.max(1));
    // The tokens after the span that decoding reads: the d decoded ones, then the targets.
    let fed = &x[end..end + d + k];
    let ys = &fed[d..];
    let mut work = Work {
        targets: k,
        ..Work::default()
    };
    // Per target step, the candidates of every chunk group.
    let mut cands: Vec<Vec<Candidates>> = (0..k).map(|_| Vec::new()).collect();
    let clock = std::time::Instant::now();
    let mut frozen_time = std::time::Duration::ZERO;
    for batch in plan.batches(usize::MAX) {
        let frozen_start = std::time::Instant::now();
        let s = plan.chunks[batch.start].len();
        let mut hits = Vec::with_capacity(batch.len());
        for j in batch.clone() {
            let before = cache.hits();
            hits.push(cache.get(frozen, &x[plan.chunks[j].clone()]));
            if cache.hits() > before {
                work.cached_tokens += s;
            } else {
                work.chunk_tokens += s;
            }
        }
        let chunk_kv = cat_layers(hits);
        // After the chunk: separator ‖ prompt ‖ y_1..y_{d+k-1}; row i sits at position
        // s + i. The last token of that tail is only ever a candidate, so the frozen pass
        // stops before it.
        let mut tail = plan.prompt.clone();
        tail.extend_from_slice(&fed[..d + k - 1]);
        let frozen_tail = &tail[..tail.len() - 1];
        let mut kv = chunk_kv;
        if !frozen_tail.is_empty() {
            let rows = vec![frozen_tail.to_vec(); batch.len()];
            work.prompt_tokens += frozen_tail.len() * batch.len();
            frozen.keys_values(
                flat_ids(&rows, &frozen.device()),
                s,
                Some(&mut kv),
                Rows::Plain,
            );
        }
        frozen_time += frozen_start.elapsed();
        for (t, step) in cands.iter_mut().enumerate() {
            // The candidate of decoding step d + t is tail[p + d + t] (p + 1 = prompt
            // rows), at position s + p + d + t, after the frozen rows before it.
            let at = plan.prompt.len() - 1 + d + t;
            let mut past: Vec<LayerKv> = kv
                .iter()
                .map(|l| {
                    let (k, v) = (
                        l.k.clone().narrow(2, 0, s + at),
                        l.v.clone().narrow(2, 0, s + at),
                    );
                    if track {
                        LayerKv {
                            k: k.autodiff(),
                            v: v.autodiff(),
                        }
                    } else {
                        LayerKv { k, v }
                    }
                })
                .collect();
            let ids = ids_tensor(&vec![tail[at]; batch.len()], &device).reshape([batch.len(), 1]);
            work.candidate_rows += batch.len();
            let new_kv = model.keys_values(ids, s + at, Some(&mut past), Rows::LastIsCandidate);
            step.push(Candidates(
                new_kv
                    .into_iter()
                    .map(|kv| (kv.cand_k.expect("candidate rows"), kv.v))
                    .collect(),
            ));
        }
    }
    // Step t's local pass reads the local input, the decoded tokens and y_1..y_t; the k
    // passes run as one batch over the longest input.
    let mut local = plan.local_input(x, bos);
    local.extend_from_slice(&fed[..d]);
    local.extend_from_slice(&ys[..k - 1]);
    work.local_tokens += k * local.len();
    let steps: Vec<Vec<&Candidates>> = cands.iter().map(|s| s.iter().collect()).collect();
    let logp = burn::tensor::activation::log_softmax(model.local_passes(&steps, &local), 1); // [k, vocab]
    let targets = ids_tensor(ys, &device).reshape([k, 1]);
    let nll_t = logp.clone().gather(1, targets).neg().mean();
    let nll = f64::from(nll_t.clone().into_scalar::<f32>());
    let mut total = nll_t.reshape([1]);
    let mut out = ExampleLoss {
        nll,
        window_nll: None,
        kl: None,
        full_nll: None,
        kl_full: None,
        work,
    };
    let text = ex.kind == LossKind::Continuation;
    let anchored = text && opts.anchor > 0.0;
    let distilled = text && opts.distill > 0.0;
    // A frozen reading q of the targets (log-probabilities `[k, vocab]`): its NLL, and the
    // mean KL(q ‖ p) over the targets with q held fixed, as a figure and as a loss term.
    let compare = |q_logp: Tensor<2>| {
        let ys = ids_tensor(ys, &frozen.device()).reshape([k, 1]);
        let q_nll = q_logp
            .clone()
            .gather(1, ys)
            .neg()
            .mean()
            .into_scalar::<f32>();
        let (q_logp, q) = if track {
            (q_logp.clone().autodiff(), q_logp.exp().autodiff())
        } else {
            (q_logp.clone(), q_logp.exp())
        };
        let kl = (q * (q_logp - logp.clone())).sum_dim(1).mean();
        let kl_value = kl.clone().into_scalar::<f32>();
        (Some(q_nll.into()), Some(kl_value.into()), kl.reshape([1]))
    };
    if anchored || (opts.window && text) {
        // The frozen model reads the local window and the earlier targets alone: its rows
        // for the targets are the truncated baseline's predictions.
        let frozen_start = std::time::Instant::now();
        let q_logp = window_logp(frozen, &local, k);
        out.work.local_tokens += local.len();
        frozen_time += frozen_start.elapsed();
        let kl;
        (out.window_nll, out.kl, kl) = compare(q_logp);
        if anchored {
            total = total + kl.mul_scalar(opts.anchor);
        }
    }
    if distilled || (opts.full && text) {
        // The frozen model reads the document with full attention: its rows for the
        // targets are what the far text offers (the full baseline's predictions).
        let frozen_start = std::time::Instant::now();
        let (q_logp, read) = cache.full_logp(frozen, x, end - 1 + d..end - 1 + d + k);
        out.work.full_tokens += read;
        frozen_time += frozen_start.elapsed();
        let kl;
        (out.full_nll, out.kl_full, kl) = compare(q_logp);
        if distilled {
            total = total + kl.mul_scalar(opts.distill);
        }
    }
    out.work.frozen_seconds = frozen_time.as_secs_f64();
    out.work.tracked_seconds = (clock.elapsed() - frozen_time).as_secs_f64();
    (total, out)
}

/// [`example_loss_with`] with the reference's settings ([`LossOptions::default`]) and no
/// cache: the tensor to minimise.
pub fn example_loss(
    model: &LlamaForCausalLM,
    frozen: &LlamaForCausalLM,
    x: &[u32],
    ex: &Example,
) -> Tensor<1> {
    example_loss_with(
        model,
        frozen,
        x,
        ex,
        &LossOptions::default(),
        &mut ChunkKvCache::new(0),
    )
    .0
}

/// The local input of an example: BOS and the local span (BOS not doubled when the span
/// starts with it).
pub fn local_input(x: &[u32], ex: &Example, bos: u32) -> Vec<u32> {
    ex.plan(x, PromptConfig::default(), bos).local_input(x, bos)
}

//! The training loop: AdamW on the candidate projections (or their low-rank updates),
//! warm-up and decay, global gradient-norm clipping, gradient accumulation over the
//! sequences of a step, periodic held-out evaluation with an optional [`Probe`], the log,
//! and checkpoints (`crate::checkpoint`).

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use focus_core::FocusConfig;
use focus_model::{LlamaForCausalLM, Tokenizer};
use rand::RngExt;

use crate::checkpoint::{
    LineKind, LogLine, RunDir, State, check_checkpoint, ckpt_err, save_checkpoint, truncate_log,
};
use crate::config::{TrainConfig, step_rng};
use crate::error::{Error, Result};
use crate::example::{Example, LossKind};
use crate::loss::{ChunkKvCache, ExampleLoss, LossOptions, Work, example_loss_with};
use crate::synth::{Haystack, Layout, document};

/// Packed sequences for training and held-out evaluation, and what retrieval documents
/// are made of.
#[derive(Debug, Clone)]
pub struct Data {
    /// Training sequences (BOS first).
    pub train: Vec<Vec<u32>>,
    /// Held-out sequences.
    pub eval: Vec<Vec<u32>>,
    /// Haystacks and tokenizer for retrieval documents (needed when
    /// [`TrainConfig::retrieval`] is above 0).
    pub retrieval: Option<RetrievalSource>,
}

/// What retrieval documents are made of.
#[derive(Debug, Clone)]
pub struct RetrievalSource {
    /// Tokenises the facts and cues.
    pub tokenizer: Tokenizer,
    /// The texts that hide them.
    pub haystack: Haystack,
}

/// Share of retrieval documents whose fact sits inside the local span (the memory must
/// then leave the window's own reading intact).
const LOCAL_FACTS: f64 = 0.15;
/// Most answer tokens of a retrieval document that are supervised: enough for every value
/// with its leading space and its full stop under SmolLM2's tokenizer (a six-digit number
/// takes eight; a test checks all of them fit).
pub const MAX_ANSWER_TOKENS: usize = 10;

/// The examples of step `t`: `cfg.batch` sequences, each a retrieval document (with
/// probability `cfg.retrieval`) or a training text with its examples.
fn step_examples<'d>(
    cfg: &TrainConfig,
    data: &'d Data,
    t: usize,
) -> Result<Vec<(Cow<'d, [u32]>, Example)>> {
    let mut rng = step_rng(cfg.seed, t);
    let mut out = Vec::new();
    for _ in 0..cfg.batch {
        let chunks = cfg.max_chunks(t);
        if cfg.retrieval > 0.0 && chunks > 0 && rng.random_bool(cfg.retrieval) {
            let src = data
                .retrieval
                .as_ref()
                .ok_or_else(|| Error::Input("retrieval documents need haystack texts".into()))?;
            let layout = Layout {
                chunks: rng.random_range(1..=chunks),
                chunk_len: cfg.chunk_sizes[rng.random_range(0..cfg.chunk_sizes.len())],
                window: cfg.local_window,
                local_share: LOCAL_FACTS,
                max_targets: MAX_ANSWER_TOKENS,
                max_span: cfg.span_cap(),
                pool: cfg.pool,
                straddle: cfg.straddle,
            };
            let (x, ex) = document(
                &src.tokenizer,
                &src.haystack,
                &layout,
                src.tokenizer.adds_bos(),
                &mut rng,
            )?;
            out.push((Cow::Owned(x), ex));
        } else {
            let seq = &data.train[rng.random_range(0..data.train.len())];
            for e in cfg.examples(seq.len(), &mut rng) {
                out.push((Cow::Borrowed(seq.as_slice()), e));
            }
        }
    }
    Ok(out)
}

/// A score of the model taken at each evaluation, handed in by the caller (the CLI's is a
/// small passkey accuracy): the model and the run's FocusLLM settings (`W = S`, the run's
/// prompt cap and separator) in, a fraction out, or `None` when nothing could be scored.
pub trait Probe {
    /// Scores `model` read with `focus`.
    fn score(
        &self,
        model: &LlamaForCausalLM,
        focus: FocusConfig,
    ) -> std::result::Result<Option<f64>, Box<dyn std::error::Error + Send + Sync>>;
}

/// How a run starts and stops.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the run folder's checkpoint.
    pub resume: bool,
    /// Stop (as if killed, without saving) after this many steps; for tests.
    pub stop_after: Option<usize>,
    /// Held-out sequences per evaluation.
    pub eval_sequences: usize,
    /// Chunk tokens whose frozen keys are kept for later examples of the same text (0:
    /// none). Results do not depend on it.
    pub chunk_cache_tokens: usize,
    /// Candidate weights a new run starts from instead of the copies (a file written by
    /// an earlier run: low-rank factors of the run's rank, or full projections without
    /// one); the optimizer starts afresh. Not used when resuming.
    pub init: Option<PathBuf>,
}

fn summarize(step: usize, kind: LineKind, losses: &[(LossKind, ExampleLoss)]) -> LogLine {
    let mean = |k: Option<LossKind>, f: &dyn Fn(&ExampleLoss) -> Option<f64>| {
        let v: Vec<f64> = losses
            .iter()
            .filter(|(kk, _)| k.is_none_or(|k| *kk == k))
            .filter_map(|(_, l)| f(l))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let nll = |l: &ExampleLoss| Some(l.nll);
    LogLine {
        step,
        kind,
        loss: mean(None, &nll).unwrap_or(f64::NAN),
        continuation: mean(Some(LossKind::Continuation), &nll),
        repetition: mean(Some(LossKind::Repetition), &nll),
        retrieval: mean(Some(LossKind::Retrieval), &nll),
        window: mean(Some(LossKind::Continuation), &|l| l.window_nll),
        kl: mean(Some(LossKind::Continuation), &|l| l.kl),
        full: mean(Some(LossKind::Continuation), &|l| l.full_nll),
        kl_full: mean(Some(LossKind::Continuation), &|l| l.kl_full),
        targets: None,
        split: None,
        lr: None,
        grad_norm: None,
        tokens: 0,
        seconds: 0.0,
        probe: None,
    }
}

/// Held-out loss over the first `n` evaluation sequences (fixed examples), and the
/// probe's score.
pub fn evaluate(
    model: &LlamaForCausalLM,
    frozen: &LlamaForCausalLM,
    cfg: &TrainConfig,
    data: &Data,
    n: usize,
    probe: Option<&dyn Probe>,
    step: usize,
) -> Result<LogLine> {
    let t0 = Instant::now();
    let plain = model.valid();
    let mut rng = step_rng(cfg.seed ^ 0xE7A1, 0);
    let mut losses = Vec::new();
    let mut tokens = 0;
    let both = TrainConfig {
        objective: crate::config::Objective::Both,
        spans: 1,
        ..cfg.clone()
    };
    let mut cache = ChunkKvCache::new(0);
    // The window's own reading of the continuation targets and the full-attention one are
    // logged beside FocusLLM's.
    let opts = LossOptions {
        window: true,
        full: true,
        ..cfg.loss_options()
    };
    for seq in data.eval.iter().take(n) {
        for ex in both.examples(seq.len(), &mut rng) {
            let (_, l) = example_loss_with(&plain, frozen, seq, &ex, &opts, &mut cache);
            tokens += l.work.tokens_read();
            losses.push((ex.kind, l));
        }
    }
    let mut line = summarize(step, LineKind::Eval, &losses);
    if let Some(p) = probe {
        let focus = FocusConfig {
            prompt: cfg.prompt,
            ..FocusConfig::new(cfg.local_window, cfg.local_window)
        };
        line.probe = p
            .score(&plain, focus)
            .map_err(|e| Error::Input(format!("the probe failed: {e}")))?;
    }
    line.tokens = tokens;
    line.seconds = t0.elapsed().as_secs_f64();
    Ok(line)
}

fn rank_words(rank: Option<usize>) -> String {
    rank.map_or("full candidate projections".into(), |r| {
        format!("rank-{r} updates")
    })
}

/// Trains the candidate projections of `base` (a model on a plain device) and returns
/// the trained model (plain device). `on_line` sees every log line as it is written.
// The model, settings, data, run folder, options, probe and callbacks are each needed.
#[allow(clippy::too_many_arguments)]
pub fn train(
    base: LlamaForCausalLM,
    cfg: &TrainConfig,
    data: &Data,
    dir: &RunDir,
    opts: &RunOptions,
    probe: Option<&dyn Probe>,
    mut on_line: impl FnMut(&LogLine),
) -> Result<LlamaForCausalLM> {
    cfg.validate()?;
    if data.train.is_empty() {
        return Err(Error::Input("no training sequences".into()));
    }
    std::fs::create_dir_all(&dir.0).map_err(Error::io(&dir.0))?;
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(cfg.weight_decay)
        .init();
    let (model, start) = if opts.resume {
        let ckpt = dir.checkpoint();
        let state = check_checkpoint(dir)?;
        if state.config != *cfg {
            return Err(ckpt_err(&ckpt, "was written with other settings"));
        }
        let model = base
            .with_candidate_projections()
            .load_focus_weights(&ckpt.join("candidates.safetensors"))?
            .fix_candidate_param_ids();
        let opt_path = ckpt.join("optimizer.bpk");
        optim = optim
            .load(&opt_path)
            .map_err(|e| ckpt_err(&opt_path, format!("{e:?}")))?;
        truncate_log(&dir.log(), state.step)?;
        (model, state.step)
    } else {
        if dir.checkpoint().exists() {
            return Err(ckpt_err(
                &dir.checkpoint(),
                "exists already (resume the run, or choose another output folder)",
            ));
        }
        let _ = std::fs::remove_file(dir.log());
        let mut model = base.with_candidate_projections();
        if let Some(path) = &opts.init {
            model = model.load_focus_weights(path)?;
            if model.low_rank() != cfg.rank {
                return Err(Error::Input(format!(
                    "{} holds {}, the run trains {}",
                    path.display(),
                    rank_words(model.low_rank()),
                    rank_words(cfg.rank)
                )));
            }
        } else if let Some(r) = cfg.rank {
            model = model.with_low_rank(r, cfg.seed)?;
        }
        (model.fix_candidate_param_ids(), 0)
    };
    let frozen = model.clone();
    let mut model = model.freeze_all_but_candidates().train();
    let ids = model.trainable_ids();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log())
        .map_err(Error::io(dir.log()))?;
    let mut write_line = |line: &LogLine| -> Result<()> {
        writeln!(log, "{}", serde_json::to_string(line).expect("log line"))
            .map_err(Error::io(dir.log()))?;
        on_line(line);
        Ok(())
    };
    if start == 0 && cfg.eval_every > 0 && !data.eval.is_empty() {
        // The starting point (copied candidate projections), for before/after curves.
        let line = evaluate(&model, &frozen, cfg, data, opts.eval_sequences, probe, 0)?;
        write_line(&line)?;
    }
    let mut cache = ChunkKvCache::new(opts.chunk_cache_tokens);
    let loss_opts = cfg.loss_options();
    for t in start..cfg.steps {
        let t0 = Instant::now();
        let examples = step_examples(cfg, data, t)?;
        if examples.is_empty() {
            return Err(Error::Input(format!(
                "the training sequences are shorter than the local window {}",
                cfg.local_window
            )));
        }
        let scale = 1.0 / examples.len() as f64;
        let mut sum: Vec<Option<Tensor<2>>> = vec![None; ids.len()];
        let mut losses = Vec::new();
        let mut work = Work::default();
        let mut backward = 0.0;
        for (seq, ex) in &examples {
            let (total, l) = example_loss_with(&model, &frozen, seq, ex, &loss_opts, &mut cache);
            work.add(&l.work);
            let back = Instant::now();
            let grads = GradientsParams::from_grads(total.mul_scalar(scale).backward(), &model);
            backward += back.elapsed().as_secs_f64();
            for (acc, id) in sum.iter_mut().zip(&ids) {
                if let Some(g) = grads.get::<2>(*id) {
                    *acc = Some(match acc.take() {
                        Some(a) => a + g,
                        None => g,
                    });
                }
            }
            losses.push((ex.kind, l));
        }
        let sq: Vec<Tensor<1>> = sum
            .iter()
            .flatten()
            .map(|g| g.clone().square().sum())
            .collect();
        let norm = if sq.is_empty() {
            0.0
        } else {
            f64::from(Tensor::cat(sq, 0).sum().into_scalar::<f32>()).sqrt()
        };
        // A NaN would otherwise flow into the weights and the checkpoint.
        let bad_loss = losses.iter().any(|(_, l)| {
            !l.nll.is_finite()
                || l.kl.is_some_and(|k| !k.is_finite())
                || l.kl_full.is_some_and(|k| !k.is_finite())
        });
        if bad_loss || !norm.is_finite() {
            let what = if bad_loss {
                "the loss"
            } else {
                "the gradient norm"
            };
            return Err(Error::Diverged { step: t + 1, what });
        }
        let factor = if cfg.clip > 0.0 && norm > f64::from(cfg.clip) {
            f64::from(cfg.clip) / (norm + 1e-6)
        } else {
            1.0
        };
        let mut grads = GradientsParams::new();
        for (g, id) in sum.into_iter().zip(&ids) {
            if let Some(g) = g {
                grads.register(*id, g.mul_scalar(factor));
            }
        }
        let lr = cfg.lr_at(t);
        model = optim.step(lr, model, grads);
        let mut line = summarize(t + 1, LineKind::Train, &losses);
        line.lr = Some(lr);
        line.grad_norm = Some(norm);
        line.tokens = work.tokens_read();
        line.targets = Some(work.targets);
        line.split = Some([work.frozen_seconds, work.tracked_seconds, backward]);
        line.seconds = t0.elapsed().as_secs_f64();
        write_line(&line)?;
        let last = t + 1 == cfg.steps;
        if opts.stop_after == Some(t + 1) && !last {
            return Ok(model.valid());
        }
        if (cfg.eval_every > 0 && (t + 1) % cfg.eval_every == 0 || last) && !data.eval.is_empty() {
            let line = evaluate(
                &model,
                &frozen,
                cfg,
                data,
                opts.eval_sequences,
                probe,
                t + 1,
            )?;
            write_line(&line)?;
        }
        if cfg.save_every > 0 && (t + 1) % cfg.save_every == 0 || last {
            let state = State {
                step: t + 1,
                config: cfg.clone(),
            };
            save_checkpoint(dir, &model, &optim, &state)?;
        }
    }
    Ok(model.valid())
}

//! `focus train`: train the candidate projections on text files.

use std::path::PathBuf;

use anyhow::{Result, bail};
use focus_core::{FocusConfig, Reading};
use focus_eval::retrieval::{Form, KeyRef, Split, Task, trial};
use focus_model::{LlamaForCausalLM, Tokenizer};
use focus_train::data::{pack, pack_held_out, read_texts};
use focus_train::synth::Haystack;
use focus_train::{
    Data, LineKind, Objective, Probe, RetrievalSource, RunDir, RunOptions, Schedule, TrainConfig,
    train,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::ModelArgs;
use crate::load::load_model;

/// Train FocusLLM's candidate projections (the base model stays frozen).
///
/// Each step draws `--batch` sequences; each sequence gives a continuation example (the
/// memory strictly before a local span of random length) and a repetition example (the
/// memory over the whole sequence, the span inside it), with a chunk length drawn from
/// `--chunk-sizes`; the loss is the cross-entropy of the token after the span. The run
/// folder gets `log.jsonl`, `checkpoint/` (rewritten atomically every `--save-every`
/// steps; `--resume` continues from it exactly) and, at the end, `focus-weights.safetensors`
/// for `--focus-weights` (plus `focus-weights-full.safetensors`, merged full projections
/// in the reference layout, with `--rank`).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Training text: files, or folders whose .txt files are used.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Held-out text for evaluation (files or folders).
    #[arg(long, num_args = 1..)]
    pub eval_data: Vec<PathBuf>,
    /// Run folder.
    #[arg(long, default_value = "runs/focus")]
    pub out: PathBuf,
    /// Continue the run in --out from its checkpoint (same settings).
    #[arg(long)]
    pub resume: bool,
    /// Local window W of the training examples (the local span is 30..W-2 tokens).
    #[arg(long, default_value_t = 256)]
    pub local_window: usize,
    /// Chunk lengths S, one drawn per example.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    pub chunk_sizes: Vec<usize>,
    #[command(flatten)]
    pub prompt: crate::args::PromptArgs,
    /// Objectives per sequence: both, random (one of the two, as the reference),
    /// continuation, repetition.
    #[arg(long, value_enum, default_value = "both")]
    pub objective: ObjectiveArg,
    /// Train a rank-R update of the candidate projections instead of the full matrices.
    #[arg(long)]
    pub rank: Option<usize>,
    /// Shortest packed sequence, in tokens.
    #[arg(long, default_value_t = 1024)]
    pub min_len: usize,
    /// Longest packed sequence, in tokens.
    #[arg(long, default_value_t = 2048)]
    pub max_len: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Sequences per step (their gradients are accumulated).
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Decay after the warm-up: linear, cosine, constant.
    #[arg(long, value_enum, default_value = "linear")]
    pub schedule: ScheduleArg,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    /// Seed of every random choice (data order, examples, low-rank initialisation).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Evaluate every this many steps (0: at the end only).
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    /// Held-out sequences per evaluation.
    #[arg(long, default_value_t = 8)]
    pub eval_sequences: usize,
    /// Passkey probe lengths at each evaluation (default: 2W and 4W; `none` for no probe).
    /// The probe scores the exact rate on validation keys.
    #[arg(long, value_delimiter = ',', value_parser = crate::args::parse_len_or_none)]
    pub probe_lengths: Vec<Option<usize>>,
    /// Passkey probe trials per length and depth (two depths, 0.25 and 0.75), each with a
    /// key of its own.
    #[arg(long, default_value_t = 1)]
    pub probe_trials: u64,
    /// Save a checkpoint every this many steps (0: at the end only).
    #[arg(long, default_value_t = 50)]
    pub save_every: usize,
    /// Supervised tokens after each text span, each predicted as decoding predicts it
    /// (1 in the reference).
    #[arg(long, default_value_t = 1)]
    pub targets: usize,
    /// Local spans per sequence and objective (they share the sequence's chunk keys).
    #[arg(long, default_value_t = 1)]
    pub spans: usize,
    /// Share of each step's sequences that are retrieval documents: a fact (number, code,
    /// name, year) hidden in the training text, a question or re-mention at the end, the
    /// answer supervised (0: text only, as the reference).
    #[arg(long, default_value_t = 0.0)]
    pub retrieval: f64,
    /// Chunks in memory of the retrieval documents, as STEP:MOST pairs (e.g.
    /// 0:1,100:2,200:4,400:8); from STEP on, each document has 1..=MOST chunks.
    #[arg(long, value_delimiter = ',', default_value = "0:4")]
    pub curriculum: Vec<String>,
    /// Chunk tokens whose frozen keys are kept for the other examples of the same text.
    #[arg(long, default_value_t = 32768)]
    pub chunk_cache: usize,
    /// Longest local span of a training example (default: the local window minus 2, as the
    /// reference); shorter spans make the local passes and dynamic prompts cheaper.
    #[arg(long)]
    pub max_span: Option<usize>,
    /// Build retrieval documents from this many distinct haystack blocks per chunk length,
    /// so that every chunk but the fact's comes from the chunk cache (0: any slice).
    #[arg(long, default_value_t = 0)]
    pub pool: usize,
    /// With --pool: the share of retrieval documents whose fact statement is cut between
    /// two memory chunks (the end of one, the start of the next), as real inputs are cut
    /// wherever a chunk ends (0: every statement whole in one chunk).
    #[arg(long, default_value_t = 0.0)]
    pub straddle: f64,
    /// Weight of the window anchor on text continuation examples: the KL divergence from
    /// the frozen model's prediction from the local window alone to FocusLLM's, added to
    /// the loss (0: off, as the paper). It keeps the memory from disturbing ordinary text.
    #[arg(long, default_value_t = 0.0)]
    pub anchor: f64,
    /// Weight of the full-attention distillation on text continuation examples: the KL
    /// divergence from the frozen model's prediction reading the whole text (up to its
    /// context length) to FocusLLM's, added to the loss (0: off, as the paper). It shows
    /// the memory what the far text offers beyond the one observed next token.
    #[arg(long, default_value_t = 0.0)]
    pub distill: f64,
    /// The most tokens a text continuation example decodes after its span, teacher-forced
    /// and unsupervised, before its targets: each draws how many from 0 to this, so that
    /// the later steps of a generation are trained too (0: the targets right after the
    /// span, as the paper).
    #[arg(long, default_value_t = 0)]
    pub decoded: usize,
    /// Start from these candidate weights (written by an earlier run: its low-rank factors
    /// with the same --rank, or full projections without --rank) instead of copies of the
    /// base projections; the optimizer starts afresh.
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
}

/// Parses `STEP:MOST` pairs.
fn curriculum(items: &[String]) -> Result<Vec<(usize, usize)>> {
    items
        .iter()
        .map(|s| {
            let (a, b) = s
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--curriculum {s:?} is not STEP:MOST"))?;
            let parse = |v: &str| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("--curriculum {s:?}: {v:?} is not a number"))
            };
            Ok((parse(a)?, parse(b)?))
        })
        .collect()
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ObjectiveArg {
    Both,
    Random,
    Continuation,
    Repetition,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ScheduleArg {
    Linear,
    Cosine,
    Constant,
}

pub fn run(args: Args, quiet: bool) -> Result<()> {
    if args.model.focus_weights.is_some() {
        bail!(
            "--focus-weights is not used by train (training starts from copies; use --resume to continue a run)"
        );
    }
    if args.model.dtype == crate::device::Dtype::F16 {
        bail!(
            "--dtype f16 cannot train: without loss scaling or f32 master weights (burn 0.22 has neither) AdamW's epsilon rounds to 0 and the weights turn NaN after one step; use bf16 or f32"
        );
    }
    let cfg = TrainConfig {
        local_window: args.local_window,
        chunk_sizes: args.chunk_sizes.clone(),
        prompt: args.prompt.shape(),
        objective: match args.objective {
            ObjectiveArg::Both => Objective::Both,
            ObjectiveArg::Random => Objective::Random,
            ObjectiveArg::Continuation => Objective::Continuation,
            ObjectiveArg::Repetition => Objective::Repetition,
        },
        rank: args.rank,
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        warmup: args.warmup,
        schedule: match args.schedule {
            ScheduleArg::Linear => Schedule::Linear,
            ScheduleArg::Cosine => Schedule::Cosine,
            ScheduleArg::Constant => Schedule::Constant,
        },
        weight_decay: args.weight_decay,
        clip: args.clip,
        seed: args.seed,
        eval_every: args.eval_every,
        save_every: args.save_every,
        targets: args.targets,
        spans: args.spans,
        retrieval: args.retrieval,
        curriculum: curriculum(&args.curriculum)?,
        max_span: args.max_span,
        pool: args.pool,
        straddle: args.straddle,
        anchor: args.anchor,
        distill: args.distill,
        decoded: args.decoded,
    };
    cfg.validate()?;
    if args.min_len <= args.local_window {
        bail!(
            "--min-len {} must exceed --local-window {}",
            args.min_len,
            args.local_window
        );
    }
    if args.probe_trials == 0 {
        bail!("--probe-trials must be positive");
    }
    if args.out.exists() && !args.out.is_dir() {
        bail!("--out {} is a file, not a folder", args.out.display());
    }
    if args.resume {
        // A broken checkpoint is reported before the data and the model are read.
        focus_train::checkpoint::check_checkpoint(&RunDir(args.out.clone()))?;
    }
    let texts = read_texts(&args.data)?;
    // Held-out text among the data is refused before the model is read.
    focus_train::data::check_training_texts(&texts)?;
    let held = if args.eval_data.is_empty() {
        Vec::new()
    } else {
        read_texts(&args.eval_data)?
    };
    let (loaded, _device) = load_model(&args.model, false)?;
    let tok = &loaded.tokenizer;
    let mut cfg = cfg;
    cfg.prompt = args.prompt.config(loaded.model.config())?;
    let retrieval = if cfg.retrieval > 0.0 {
        Some(RetrievalSource {
            tokenizer: tok.clone(),
            haystack: Haystack::new(tok, &texts)?,
        })
    } else {
        None
    };
    let data = Data {
        train: pack(tok, &texts, args.min_len, args.max_len, args.seed)?,
        eval: if held.is_empty() {
            Vec::new()
        } else {
            pack_held_out(tok, &held, args.min_len, args.max_len, args.seed ^ 1)?
        },
        retrieval,
    };
    let probe_lengths: Vec<usize> = if args.probe_lengths.contains(&None) {
        Vec::new()
    } else if args.probe_lengths.is_empty() {
        vec![2 * args.local_window, 4 * args.local_window]
    } else {
        args.probe_lengths.iter().flatten().copied().collect()
    };
    let probe = (!probe_lengths.is_empty()).then(|| PasskeyProbe {
        tokenizer: tok,
        lengths: probe_lengths,
        depths: vec![0.25, 0.75],
        trials: args.probe_trials,
    });
    if !quiet {
        let tokens: usize = data.train.iter().map(Vec::len).sum();
        eprintln!(
            "{} training sequences ({tokens} tokens), {} held out; run folder {}",
            data.train.len(),
            data.eval.len(),
            args.out.display()
        );
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(cfg.steps as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps {elapsed} (eta {eta}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let opts = RunOptions {
        resume: args.resume,
        stop_after: None,
        eval_sequences: args.eval_sequences,
        chunk_cache_tokens: args.chunk_cache,
        init: args.init.clone(),
    };
    let dir = RunDir(args.out.clone());
    let trained = train(
        loaded.model,
        &cfg,
        &data,
        &dir,
        &opts,
        probe.as_ref().map(|p| p as &dyn Probe),
        |line| {
            if line.kind == LineKind::Train {
                bar.set_position(line.step as u64);
                let secs = line.seconds.max(1e-9);
                bar.set_message(format!(
                    "loss {:.3} | {:.0} tok/s | {:.2} targets/s",
                    line.loss,
                    line.tokens as f64 / secs,
                    line.targets.unwrap_or(0) as f64 / secs
                ));
            } else {
                bar.println(format!(
                    "step {}: held-out loss {:.4} (continuation {}{}, repetition {}){}",
                    line.step,
                    line.loss,
                    line.continuation.map_or("-".into(), |v| format!("{v:.4}")),
                    line.window.map_or(String::new(), |v| format!(
                        " against {v:.4} for the window alone"
                    )),
                    line.repetition.map_or("-".into(), |v| format!("{v:.4}")),
                    line.probe.map_or(String::new(), |p| format!(
                        ", passkey probe {:.0}%",
                        p * 100.0
                    ))
                ));
            }
        },
    )?;
    bar.finish_and_clear();
    let out = args.out.join("focus-weights.safetensors");
    let settings = cfg.weight_settings();
    if trained.low_rank().is_some() {
        trained.save_low_rank(&out, settings)?;
        trained.merge_low_rank().save_candidate_projections(
            &args.out.join("focus-weights-full.safetensors"),
            settings,
        )?;
    } else {
        trained.save_candidate_projections(&out, settings)?;
    }
    if !quiet {
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// The probe `train` runs at each evaluation: greedy passkey retrieval with FocusLLM at a
/// few lengths and two depths, on keys of the validation split (numbered as `focus
/// passkey` numbers them); the score is the exact rate, the share of answers that are the number and
/// stop there.
struct PasskeyProbe<'a> {
    tokenizer: &'a Tokenizer,
    lengths: Vec<usize>,
    depths: Vec<f64>,
    trials: u64,
}

impl Probe for PasskeyProbe<'_> {
    fn score(
        &self,
        model: &LlamaForCausalLM,
        focus: FocusConfig,
    ) -> std::result::Result<Option<f64>, Box<dyn std::error::Error + Send + Sync>> {
        let (mut ok, mut total) = (0usize, 0usize);
        for &len in &self.lengths {
            for (d, &depth) in self.depths.iter().enumerate() {
                for i in 0..self.trials {
                    let at = KeyRef {
                        split: Split::Validation,
                        seed: 0,
                        index: d as u64 * self.trials + i,
                    };
                    let t = trial(
                        model,
                        self.tokenizer,
                        &Task::Passkey,
                        &Form::Plain,
                        Reading::Focus(focus),
                        len,
                        depth,
                        at,
                        |_, _| {},
                    )?;
                    if let Some(t) = t {
                        ok += usize::from(t.exact);
                        total += 1;
                    }
                }
            }
        }
        Ok((total > 0).then(|| ok as f64 / total as f64))
    }
}

//! The settings of a training run: objectives, schedule, batch, curriculum, and the
//! examples they draw. Every random choice of step `t` comes from a generator seeded with
//! `(seed, t)` ([`step_rng`]).

use focus_core::PromptConfig;
use focus_model::WeightSettings;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::example::{Example, LossKind, sample};
use crate::loss::LossOptions;

/// Which objectives each sequence contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Both losses on every sequence (affordable thanks to the cached chunk keys).
    Both,
    /// One loss per sequence, drawn at random (as the reference does).
    Random,
    /// Only the continuation loss.
    Continuation,
    /// Only the repetition loss.
    Repetition,
}

/// Learning-rate schedule after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Linear decay to zero at the last step (the reference's WarmupDecayLR).
    Linear,
    /// Cosine decay to zero.
    Cosine,
    /// Constant.
    Constant,
}

/// Everything that defines a run (saved with each checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Local window W of the sampled examples.
    pub local_window: usize,
    /// Chunk lengths S drawn per example.
    pub chunk_sizes: Vec<usize>,
    /// The dynamic prompt of every chunk (saved as `prompt_cap` and `separator`, as
    /// [`FocusConfig`](focus_core::FocusConfig) saves it).
    #[serde(flatten)]
    pub prompt: PromptConfig,
    /// Objectives per sequence.
    pub objective: Objective,
    /// Rank of the low-rank updates; `None` trains the full candidate projections.
    pub rank: Option<usize>,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per optimizer step (gradients accumulated over them).
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps (linear from 0).
    pub warmup: usize,
    /// Decay after the warm-up.
    pub schedule: Schedule,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Global gradient-norm clipping (0: off).
    pub clip: f32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Save a checkpoint every this many steps (0: only at the end).
    pub save_every: usize,
    /// Supervised tokens after each text span, each predicted as decoding predicts it
    /// (1 in the reference).
    #[serde(default = "one")]
    pub targets: usize,
    /// Local spans per sequence and objective; the spans of a sequence share its chunk
    /// length, so its chunks' keys are computed once (1 in the reference).
    #[serde(default = "one")]
    pub spans: usize,
    /// Share of a step's sequences that are retrieval documents (`synth`) instead of text
    /// (0, as the reference: text only).
    #[serde(default)]
    pub retrieval: f64,
    /// Chunks in memory of the retrieval documents: from step `.0` on, up to `.1` (drawn
    /// uniformly from 1 to it); the last entry whose step has come counts.
    #[serde(default)]
    pub curriculum: Vec<(usize, usize)>,
    /// Longest local span ℓ of a training example (`None`: W − 2, as the reference). The
    /// local passes and the dynamic prompts, most of a step's work, grow with ℓ.
    #[serde(default)]
    pub max_span: Option<usize>,
    /// Distinct haystack blocks per chunk length that retrieval documents are built from (0:
    /// any slice of the texts). With a pool, every memory chunk but the one holding the fact
    /// is one of these blocks, so its frozen keys come from the chunk cache.
    #[serde(default)]
    pub pool: usize,
    /// Share of pooled retrieval documents whose fact statement is cut between two memory
    /// chunks (its start ends one chunk, the rest begins the next), as a document's own
    /// chunking cuts a sentence wherever it falls; 0 keeps every statement whole in one
    /// chunk (runs saved before this setting).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub straddle: f64,
    /// Weight λ of the window anchor on text continuation examples: λ · KL(q ‖ p), where p
    /// is FocusLLM's prediction of a target and q the frozen model's prediction from the
    /// local window alone (0: off, as the reference). Not in the paper: it asks the memory
    /// to leave ordinary text as the window reads it unless a target says otherwise.
    #[serde(default)]
    pub anchor: f64,
    /// Weight μ of the full-attention distillation on text continuation examples:
    /// μ · KL(q_full ‖ p), where q_full is the frozen model's prediction of the target
    /// reading the document with full attention (BOS and its last
    /// `max_position_embeddings − 1` tokens) (0: off, as the reference). Not in the paper:
    /// it tells the memory what the far text offers ordinary prediction, beyond the one
    /// observed next token.
    #[serde(default)]
    pub distill: f64,
    /// The most tokens a text continuation example decodes after its span before its first
    /// target: each example draws D from 0 to this, teacher-forces the D tokens after the
    /// span through every chunk and the local window as decoding does, unsupervised, and
    /// supervises the `targets` tokens after them, which decoding steps D, D + 1, … predict,
    /// step 0 being the prefill's (0, as the reference: only the first steps after the
    /// span). Longer generations and the perplexity protocol predict many steps after the
    /// prefill.
    #[serde(default)]
    pub decoded: usize,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// What the weights this run writes record of it: the prompt cap they are trained
    /// with, which inference then takes.
    pub fn weight_settings(&self) -> WeightSettings {
        WeightSettings {
            prompt_cap: Some(self.prompt.cap),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if self.local_window < 8 {
            return bad(format!(
                "local window {} is too small (at least 8)",
                self.local_window
            ));
        }
        if self.chunk_sizes.is_empty() || self.chunk_sizes.contains(&0) {
            return bad("chunk sizes must be positive".into());
        }
        if self.steps == 0 || self.batch == 0 {
            return bad("steps and batch must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if self.rank == Some(0) {
            return bad("rank must be at least 1".into());
        }
        if self.targets == 0 || self.spans == 0 {
            return bad("targets and spans must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.retrieval) {
            return bad(format!(
                "the retrieval share {} is not between 0 and 1",
                self.retrieval
            ));
        }
        if !(0.0..=1.0).contains(&self.straddle) {
            return bad(format!(
                "the straddling share {} is not between 0 and 1",
                self.straddle
            ));
        }
        if self.retrieval > 0.0 && self.curriculum.iter().all(|c| c.0 > 0 || c.1 == 0) {
            return bad("retrieval documents need a curriculum that starts at step 0 with at least one chunk".into());
        }
        if self.curriculum.windows(2).any(|w| w[0].0 >= w[1].0) {
            return bad("curriculum steps must increase".into());
        }
        if !(self.anchor >= 0.0 && self.anchor.is_finite()) {
            return bad(format!(
                "the anchor weight {} must be zero or positive",
                self.anchor
            ));
        }
        if !(self.distill >= 0.0 && self.distill.is_finite()) {
            return bad(format!(
                "the distillation weight {} must be zero or positive",
                self.distill
            ));
        }
        if let Some(m) = self.max_span
            && !(30..=self.local_window - 2).contains(&m)
        {
            return bad(format!(
                "the longest span {m} is not between 30 and the local window minus 2 ({})",
                self.local_window - 2
            ));
        }
        Ok(())
    }

    /// Learning rate at step `t` (0-based).
    pub fn lr_at(&self, t: usize) -> f64 {
        if t < self.warmup {
            return self.lr * (t + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let done = (t - self.warmup) as f64 / span;
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Linear => self.lr * (1.0 - done),
            Schedule::Cosine => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
        }
    }

    /// The examples of one text sequence of length `n`: `spans` per objective, all with
    /// one chunk length drawn for the sequence.
    pub fn examples(&self, n: usize, rng: &mut StdRng) -> Vec<Example> {
        let kinds: Vec<LossKind> = match self.objective {
            Objective::Both => vec![LossKind::Continuation, LossKind::Repetition],
            Objective::Continuation => vec![LossKind::Continuation],
            Objective::Repetition => vec![LossKind::Repetition],
            Objective::Random => vec![if rng.random::<bool>() {
                LossKind::Continuation
            } else {
                LossKind::Repetition
            }],
        };
        let s = self.chunk_sizes[rng.random_range(0..self.chunk_sizes.len())];
        let mut out = Vec::new();
        for k in kinds {
            for _ in 0..self.spans {
                // The decoded tokens must fit after the span: the span is drawn in the
                // sequence without its last D tokens (at least a window left).
                let d = if k == LossKind::Continuation && self.decoded > 0 {
                    rng.random_range(0..=self.decoded.min(n.saturating_sub(self.local_window)))
                } else {
                    0
                };
                out.extend(
                    sample(
                        n - d,
                        self.local_window,
                        self.span_cap(),
                        &[s],
                        self.targets,
                        k,
                        rng,
                    )
                    .map(|e| Example { decoded: d, ..e }),
                );
            }
        }
        out
    }

    /// What the loss of one example needs to know of the run.
    pub fn loss_options(&self) -> LossOptions {
        LossOptions {
            prompt: self.prompt,
            anchor: self.anchor,
            window: false,
            distill: self.distill,
            full: false,
        }
    }

    /// The longest local span of an example.
    pub fn span_cap(&self) -> usize {
        self.max_span.unwrap_or(self.local_window - 2)
    }

    /// The most chunks of a retrieval document at step `t` (0 before the curriculum starts).
    pub fn max_chunks(&self, t: usize) -> usize {
        self.curriculum
            .iter()
            .rev()
            .find(|c| c.0 <= t)
            .map_or(0, |c| c.1)
    }
}

/// The generator of step `t`.
pub fn step_rng(seed: u64, t: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint's `state.json` keeps the prompt settings at the top level, as runs
    /// saved them before the settings became one field: such a run still resumes, and a new
    /// one is saved the same way.
    #[test]
    fn saved_runs_keep_their_layout() {
        let saved = r#"{"local_window": 512, "chunk_sizes": [512], "prompt_cap": 128,
            "objective": "continuation", "rank": 8, "steps": 400, "batch": 3, "lr": 0.001,
            "warmup": 2, "schedule": "constant", "weight_decay": 0.0, "clip": 1.0, "seed": 51,
            "eval_every": 0, "save_every": 2, "separator": 2, "targets": 4, "spans": 2,
            "retrieval": 0.6, "curriculum": [[0, 16]], "max_span": null, "pool": 64,
            "anchor": 16.0, "distill": 0.0, "decoded": 0}"#;
        let cfg: TrainConfig = serde_json::from_str(saved).unwrap();
        assert_eq!(
            cfg.prompt,
            PromptConfig {
                cap: 128,
                separator: Some(2)
            }
        );
        let written: serde_json::Value = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            written,
            serde_json::from_str::<serde_json::Value>(saved).unwrap()
        );
        // Runs older than the separator setting read BOS.
        let old = saved.replace(r#""separator": 2,"#, "");
        let cfg: TrainConfig = serde_json::from_str(&old).unwrap();
        assert_eq!(cfg.prompt.separator, None);
    }
}

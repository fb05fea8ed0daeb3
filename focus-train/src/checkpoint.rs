//! A run's folder: the JSON-lines log, and the checkpoint from which `--resume` continues
//! exactly (the candidate weights, the optimizer moments and the step; every random choice
//! of step `t` is seeded by `(seed, t)`, so nothing else needs saving). Checkpoints are
//! written atomically: a fresh folder is filled, then renamed into place.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use focus_model::LlamaForCausalLM;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// What a log line reports (`"train"` or `"eval"` in the JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// The examples of one training step.
    Train,
    /// A held-out evaluation.
    Eval,
}

/// One line of the JSON-lines log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// Steps done.
    pub step: usize,
    /// A training step's line or an evaluation's.
    pub kind: LineKind,
    /// Mean loss (nats) over the examples.
    pub loss: f64,
    /// Mean continuation loss, if any.
    pub continuation: Option<f64>,
    /// Mean repetition loss, if any.
    pub repetition: Option<f64>,
    /// Mean loss on retrieval documents, if any.
    #[serde(default)]
    pub retrieval: Option<f64>,
    /// Mean loss of the continuation examples' targets read from the local window alone
    /// by the frozen model (the truncated baseline on the same targets), when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<f64>,
    /// Mean KL(window ‖ FocusLLM) over those targets, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    /// Mean loss of the continuation examples' targets read by the frozen model with full
    /// attention over the document (the full baseline on the same targets), when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<f64>,
    /// Mean KL(full ‖ FocusLLM) over those targets, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_full: Option<f64>,
    /// Learning rate used (train lines).
    pub lr: Option<f64>,
    /// Gradient norm before clipping (train lines).
    pub grad_norm: Option<f64>,
    /// Tokens read by the model in this step or evaluation.
    pub tokens: usize,
    /// Supervised tokens of the step (train lines).
    #[serde(default)]
    pub targets: Option<usize>,
    /// Wall time of the step or evaluation, seconds.
    pub seconds: f64,
    /// Of a train step's time: frozen passes, tracked forward passes, backward passes.
    #[serde(default)]
    pub split: Option<[f64; 3]>,
    /// The score of the run's [`Probe`](crate::train::Probe) (eval lines, when one is given;
    /// the CLI's is a passkey accuracy, whence the name in the log).
    #[serde(rename = "passkey")]
    pub probe: Option<f64>,
}

/// Saved with each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Steps done.
    pub step: usize,
    /// The run's settings.
    pub config: TrainConfig,
}

/// Where a run keeps its files.
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// The latest checkpoint folder.
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoint")
    }
    /// The JSON-lines log.
    pub fn log(&self) -> PathBuf {
        self.0.join("log.jsonl")
    }
}

pub(crate) fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Writes the checkpoint of `model` (tracked or not) after `step` steps, atomically: a
/// fresh folder is filled, then renamed over the previous checkpoint.
pub(crate) fn save_checkpoint(
    dir: &RunDir,
    model: &LlamaForCausalLM,
    optim: &ModuleOptimizer,
    state: &State,
) -> Result<()> {
    let tmp = dir.0.join("checkpoint.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(Error::io(&tmp))?;
    let plain = model.valid();
    let settings = state.config.weight_settings();
    let weights = tmp.join("candidates.safetensors");
    if plain.low_rank().is_some() {
        plain.save_low_rank(&weights, settings)?;
    } else {
        plain.save_candidate_projections(&weights, settings)?;
    }
    let opt_path = tmp.join("optimizer.bpk");
    optim
        .save(&opt_path)
        .map_err(|e| ckpt_err(&opt_path, format!("{e:?}")))?;
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(tmp.join("state.json"), json).map_err(Error::io(&tmp))?;
    let ckpt = dir.checkpoint();
    let old = dir.0.join("checkpoint.old");
    if ckpt.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&ckpt, &old).map_err(Error::io(&ckpt))?;
    }
    std::fs::rename(&tmp, &ckpt).map_err(Error::io(&ckpt))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Checks, before anything is loaded, that `dir` holds a checkpoint to resume from: its
/// state reads, its candidate weights are a whole safetensors file, its optimizer state is
/// there. A run killed between the two renames of `save_checkpoint` left only
/// `checkpoint.old`, which is put back first. Returns the state.
pub fn check_checkpoint(dir: &RunDir) -> Result<State> {
    let ckpt = dir.checkpoint();
    let old = dir.0.join("checkpoint.old");
    if !ckpt.exists() && old.is_dir() {
        std::fs::rename(&old, &ckpt).map_err(Error::io(&ckpt))?;
    }
    let state = read_state(&ckpt)?;
    let cands = ckpt.join("candidates.safetensors");
    let bytes = std::fs::read(&cands).map_err(|e| ckpt_err(&cands, e))?;
    safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ckpt_err(&cands, e))?;
    let opt = ckpt.join("optimizer.bpk");
    std::fs::metadata(&opt).map_err(|e| ckpt_err(&opt, e))?;
    Ok(state)
}

/// Reads the state of a checkpoint folder.
pub fn read_state(ckpt: &Path) -> Result<State> {
    let path = ckpt.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ckpt_err(&path, e))?;
    serde_json::from_str(&text).map_err(|e| ckpt_err(&path, e))
}

/// Keeps the log lines of steps `<= step` (after a resume).
pub(crate) fn truncate_log(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<LogLine>(l).is_ok_and(|x| x.step <= step))
        .collect();
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(
        &tmp,
        kept.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

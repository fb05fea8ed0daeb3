//! Where retrieval breaks: a passkey hidden in one chunk of a memory of `C` chunks, read
//! three ways.
//!
//! - **chunk**: the key chunk's own pass (`chunk ‖ separator ‖ dynamic prompt`, its last row
//!   through the candidate projections), read through the model's head, as if that
//!   candidate's own prediction were the answer. It tells whether the chunk pass "knows" the
//!   key at all.
//! - **focus**: FocusLLM's local pass over the candidates of all `C` chunks.
//! - **truncated**: the local window alone (the key lies outside it), the floor.
//!
//! and, with the key moved into the local window (the same number of memory chunks, all
//! haystack): **focus-window** and **truncated-window**. There the truncated window sees the
//! key, so FocusLLM should read it just as well; a gap measures how much the candidates
//! disturb the window's own reading.
//!
//! Each reading is scored by teacher-forcing the answer: its negative log-likelihood, whether
//! the key's first digit is the argmax, and whether every answer token is (which is exactly
//! when greedy decoding would produce the answer).

use focus_core::{CondensingModel, FocusConfig, Plan, Reading, Session};
use focus_model::model::ids_tensor;
use focus_model::{LlamaForCausalLM, Rows, Tokenizer};
use serde::Serialize;

use super::retrieval::{Form, Split, Task, fit, key};
use super::token_nll;
use crate::error::{Error, Result};

/// How one reading did on one trial.
#[derive(Debug, Clone, Serialize)]
pub struct Readout {
    /// `chunk`, `focus`, `truncated`, `focus-window` or `truncated-window`.
    pub how: &'static str,
    /// Negative log-likelihood of the answer tokens, teacher-forced (nats, summed).
    pub answer_nll: f64,
    /// Whether the first digit of the key is the argmax after the correct tokens before it.
    pub first_digit: bool,
    /// Whether every answer token is the argmax after the correct tokens before it, i.e.
    /// whether greedy decoding produces the answer.
    pub all_tokens: bool,
    /// The argmax tokens after each correct prefix, decoded.
    pub output: String,
}

/// One probe trial.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeTrial {
    /// Chunks in memory.
    pub chunks: usize,
    /// Seed of the trial (it draws the key and where it sits).
    pub seed: u64,
    /// The hidden number.
    pub key: u32,
    /// Index of the chunk that holds the key.
    pub key_chunk: usize,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// The readings, in the order chunk, focus, truncated, then focus-window and
    /// truncated-window when the key could be placed in the window.
    pub readings: Vec<Readout>,
}

/// (NLL, argmax) of each of `gold` after the logits rows a reader produces one by one:
/// `next(None)` gives the first row, `next(Some(t))` the row after feeding `t`.
fn teacher_forced(gold: &[u32], mut next: impl FnMut(Option<u32>) -> Vec<f32>) -> Vec<(f32, u32)> {
    let mut out = Vec::with_capacity(gold.len());
    let mut row = next(None);
    for (i, &g) in gold.iter().enumerate() {
        out.push((token_nll(&row, g), focus_core::sample::argmax(&row)));
        if i + 1 < gold.len() {
            row = next(Some(g));
        }
    }
    out
}

/// The key chunk's own reader: `row ‖ fed tokens`, the last row through the candidate
/// projections (as in FocusLLM's decode steps, where each new token is the candidate).
fn chunk_reader<'a>(
    model: &'a LlamaForCausalLM,
    row: &'a [u32],
) -> impl FnMut(Option<u32>) -> Vec<f32> + 'a {
    let mut ids = row.to_vec();
    move |fed| {
        if let Some(t) = fed {
            ids.push(t);
        }
        let f = model.forward_last(
            ids_tensor(&ids, &model.device()),
            0,
            None,
            Rows::LastIsCandidate,
            1,
        );
        model.logits_row(model.last_logits(f.hidden))
    }
}

fn session_reader<'a>(
    model: &'a LlamaForCausalLM,
    reading: Reading,
    ids: &'a [u32],
) -> Result<impl FnMut(Option<u32>) -> Vec<f32> + 'a> {
    let bos = model.config().bos_token_id;
    let (mut session, first) = Session::read(model, reading, bos, ids, |_, _| {})?;
    let mut first = Some(model.logits_row(first));
    Ok(move |fed: Option<u32>| match fed {
        None => first.take().expect("the first row is read once"),
        Some(t) => model.logits_row(session.step(t)),
    })
}

fn reading(
    how: &'static str,
    tokenizer: &Tokenizer,
    gold: &[u32],
    scores: &[(f32, u32)],
) -> Result<Readout> {
    let first = gold
        .iter()
        .position(|&t| {
            tokenizer
                .decode(&[t])
                .is_ok_and(|s| s.chars().any(|c| c.is_ascii_digit()))
        })
        .unwrap_or(0);
    let argmax: Vec<u32> = scores.iter().map(|s| s.1).collect();
    Ok(Readout {
        how,
        answer_nll: scores.iter().map(|s| f64::from(s.0)).sum(),
        first_digit: scores[first].1 == gold[first],
        all_tokens: scores.iter().zip(gold).all(|(s, &g)| s.1 == g),
        output: tokenizer.decode(&argmax)?,
    })
}

/// Runs one probe trial: the passkey template sized to `chunks` memory chunks plus the local
/// window of `cfg`, the key trial `seed` of the validation split (a diagnostic chooses
/// things, so it never reads test keys), inside the memory at a depth drawn from `seed`.
/// Returns `None`
/// when the key's digits straddle two chunks at every depth tried.
pub fn probe_trial(
    model: &LlamaForCausalLM,
    tokenizer: &Tokenizer,
    cfg: &FocusConfig,
    chunks: usize,
    seed: u64,
) -> Result<Option<ProbeTrial>> {
    if chunks == 0 {
        return Err(Error::Input("a probe needs at least one chunk".into()));
    }
    let bos = model.config().bos_token_id;
    let key = key(Split::Validation, 0, seed);
    let w = cfg.local_window;
    let length = chunks * cfg.chunk_len + w;
    let gold = tokenizer.encode(&format!(" {key}"), false)?;
    // Fractions of the memory at which the key is tried, the first drawn from the seed.
    let u0 = (seed as f64 * 0.618_034).fract();
    for attempt in 0..8 {
        let u = 0.05 + 0.9 * (u0 + attempt as f64 * 0.37).fract();
        let depth = u * (length - w) as f64 / length as f64;
        let (ids, _) = fit(tokenizer, &Task::Passkey, &Form::Plain, length, depth, key)?;
        let plan = Plan::new(&ids, cfg, bos)?;
        let text = key.to_string();
        let found = (0..plan.num_chunks()).find(|&j| {
            tokenizer
                .decode(&ids[plan.chunks[j].clone()])
                .is_ok_and(|s| s.contains(&text))
        });
        let Some(j) = found else { continue };
        let row = plan.chunk_input(&ids, j);
        let mut readings = Vec::with_capacity(5);
        let scores = teacher_forced(&gold, chunk_reader(model, &row));
        readings.push(reading("chunk", tokenizer, &gold, &scores)?);
        for mode in [Reading::Focus(*cfg), Reading::Truncated(w)] {
            let scores = teacher_forced(&gold, session_reader(model, mode, &ids)?);
            readings.push(reading(mode.name(), tokenizer, &gold, &scores)?);
        }
        // The key in the window: half-way into it.
        let depth = (length - w / 2) as f64 / length as f64;
        let (near, _) = fit(tokenizer, &Task::Passkey, &Form::Plain, length, depth, key)?;
        let plan = Plan::new(&near, cfg, bos)?;
        let in_window = tokenizer
            .decode(&near[plan.local.clone()])
            .is_ok_and(|s| s.contains(&text));
        if in_window && plan.num_chunks() > 0 {
            for (mode, how) in [
                (Reading::Focus(*cfg), "focus-window"),
                (Reading::Truncated(w), "truncated-window"),
            ] {
                let scores = teacher_forced(&gold, session_reader(model, mode, &near)?);
                readings.push(reading(how, tokenizer, &gold, &scores)?);
            }
        }
        return Ok(Some(ProbeTrial {
            chunks: plan.num_chunks(),
            seed,
            key,
            key_chunk: j,
            prompt_tokens: ids.len(),
            readings,
        }));
    }
    Ok(None)
}

/// Per (chunks, reading): trials, mean answer NLL, and the shares of trials whose first
/// digit and all answer tokens were right.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeCell {
    /// Chunks in memory.
    pub chunks: usize,
    /// `chunk`, `focus` or `truncated`.
    pub how: String,
    /// Trials.
    pub trials: usize,
    /// Mean teacher-forced NLL of the answer (nats).
    pub answer_nll: f64,
    /// Share with the first digit right.
    pub first_digit: f64,
    /// Share with every answer token right (greedy decoding finds the key).
    pub all_tokens: f64,
}

/// Summarises trials per (chunks, reading), in first-seen order.
pub fn summarize(trials: &[ProbeTrial]) -> Vec<ProbeCell> {
    let mut cells: Vec<ProbeCell> = Vec::new();
    for t in trials {
        for r in &t.readings {
            let i = match cells
                .iter()
                .position(|c| c.chunks == t.chunks && c.how == r.how)
            {
                Some(i) => i,
                None => {
                    cells.push(ProbeCell {
                        chunks: t.chunks,
                        how: r.how.to_string(),
                        trials: 0,
                        answer_nll: 0.0,
                        first_digit: 0.0,
                        all_tokens: 0.0,
                    });
                    cells.len() - 1
                }
            };
            let c = &mut cells[i];
            c.trials += 1;
            c.answer_nll += r.answer_nll;
            c.first_digit += f64::from(u8::from(r.first_digit));
            c.all_tokens += f64::from(u8::from(r.all_tokens));
        }
    }
    for c in &mut cells {
        let n = c.trials as f64;
        c.answer_nll /= n;
        c.first_digit /= n;
        c.all_tokens /= n;
    }
    cells
}

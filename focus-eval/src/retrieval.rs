//! Retrieval from long inputs: the passkey test (spec §5.2) and a needle in a haystack
//! of essays. A number is hidden at a chosen depth of a haystack sized to a length in
//! tokens; the model is asked for it and answers greedily.
//!
//! Scoring: the model generates as many tokens as the number has, plus one (a
//! byte-level tokenizer may spend a token on the leading space), and a trial is correct
//! when the first integer in its output equals the hidden number (the ∞-Bench passkey
//! rule). The reference instead compares the decoded output with the decoded answer,
//! which needs exactly the answer's token count; the two agree whenever the model
//! answers with the number alone.

use focus_core::Reading;
use focus_model::{LlamaForCausalLM, Tokenizer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use super::generate;
use crate::error::{Error, Result};

/// The passkey haystack sentence, repeated with spaces (spec §5.2).
pub const PASSKEY_GARBAGE: &str =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
const PASSKEY_TASK: &str = "There is an important info hidden inside a lot of irrelevant text. \
Find it and memorize them. I will quiz you about the important information there.";
const PASSKEY_QUESTION: &str = "What is the pass key? The pass key is";
const NEEDLE_QUESTION: &str =
    "What is the special magic number mentioned in the text above? The special magic number is";

/// What hides the number.
#[derive(Debug, Clone)]
pub enum Task {
    /// The passkey template of the FocusLLM reference.
    Passkey,
    /// `"The special magic number is {k}."` inside a haystack text (e.g. essays).
    Needle {
        /// The haystack; repeated when a length asks for more text than it has.
        haystack: String,
    },
}

impl Task {
    /// `passkey` or `niah`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Passkey => "passkey",
            Self::Needle { .. } => "niah",
        }
    }

    /// The prompt with `n` haystack characters and `key` at fraction `depth` of them.
    pub fn prompt(&self, n: usize, depth: f64, key: u32) -> String {
        let cut = ((depth.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
        match self {
            Self::Passkey => {
                let garbage = repeat_to(PASSKEY_GARBAGE, " ", n);
                let prefix = &garbage[..cut];
                // The suffix restarts at the beginning of the repeated sentence.
                let suffix = &garbage[..n - cut];
                [
                    prefix,
                    &format!("The pass key is {key}. Remember it. {key} is the pass key."),
                    suffix,
                    PASSKEY_TASK,
                    PASSKEY_QUESTION,
                ]
                .join("\n")
            }
            Self::Needle { haystack } => {
                let hay = repeat_to(haystack, "\n\n", n);
                let hay = &hay[..floor_char_boundary(&hay, n)];
                // Insert at the end of the sentence before the cut (or at the cut).
                let cut = floor_char_boundary(hay, cut);
                let at = hay[..cut].rfind(". ").map_or(cut, |i| i + 1);
                format!(
                    "{} The special magic number is {key}.{}\n\n{NEEDLE_QUESTION}",
                    &hay[..at],
                    &hay[at..]
                )
            }
        }
    }
}

fn repeat_to(s: &str, sep: &str, n: usize) -> String {
    let mut out = String::with_capacity(n + s.len() + sep.len());
    while out.len() < n {
        if !out.is_empty() {
            out.push_str(sep);
        }
        out.push_str(s);
    }
    out.truncate(floor_char_boundary(&out, n));
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The prompt tokens of a trial: the longest haystack whose prompt (as the model's
/// tokenizer encodes it) has at most `length` tokens.
pub fn fit(
    tokenizer: &Tokenizer,
    task: &Task,
    length: usize,
    depth: f64,
    key: u32,
) -> Result<Vec<u32>> {
    let count = |n: usize| -> Result<Vec<u32>> {
        Ok(tokenizer.encode_prompt(&task.prompt(n, depth, key))?)
    };
    let empty = count(0)?;
    if empty.len() > length {
        return Err(Error::Input(format!(
            "a {} prompt needs at least {} tokens; {length} is too short",
            task.name(),
            empty.len()
        )));
    }
    // Largest n with count(n) <= length, by bisection (counts grow with n).
    let (mut lo, mut hi) = (0usize, length * 8);
    let mut best = empty;
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let ids = count(mid)?;
        if ids.len() <= length {
            lo = mid;
            best = ids;
        } else {
            hi = mid - 1;
        }
    }
    Ok(best)
}

/// The hidden number of trial `seed` (1..=49999, as in the reference).
pub fn key_for(seed: u64) -> u32 {
    StdRng::seed_from_u64(seed).random_range(1..50_000)
}

/// First integer in `text`, if any.
pub fn first_integer(text: &str) -> Option<u64> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One trial's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// `passkey` or `niah`.
    pub task: String,
    /// `focus`, `truncated` or `full`.
    pub mode: String,
    /// Requested length in tokens.
    pub length: usize,
    /// Actual prompt length in tokens.
    pub prompt_tokens: usize,
    /// Depth of the number in the haystack (0 = start, 1 = end).
    pub depth: f64,
    /// Seed of the trial.
    pub seed: u64,
    /// The hidden number.
    pub key: u32,
    /// What the model answered.
    pub output: String,
    /// Whether the first integer of the output is the key.
    pub correct: bool,
    /// Wall time of the trial in seconds.
    pub seconds: f64,
}

/// Runs one trial of `task` under `mode`. Returns `None` when the prompt does not fit
/// the mode (full attention beyond the model's context).
#[allow(clippy::too_many_arguments)]
pub fn trial(
    model: &LlamaForCausalLM,
    tokenizer: &Tokenizer,
    task: &Task,
    mode: Reading,
    length: usize,
    depth: f64,
    seed: u64,
    progress: impl FnMut(usize, usize),
) -> Result<Option<Trial>> {
    let key = key_for(seed);
    let ids = fit(tokenizer, task, length, depth, key)?;
    let answer = tokenizer.encode(&key.to_string(), false)?;
    let n_new = answer.len() + 1;
    if !mode.fits(model.config().max_position_embeddings, ids.len(), n_new) {
        return Ok(None);
    }
    let t0 = std::time::Instant::now();
    let out = generate(model, mode, &ids, n_new, tokenizer.eos_ids(), progress)?;
    let output = tokenizer.decode(&out)?;
    Ok(Some(Trial {
        task: task.name().to_string(),
        mode: mode.name().to_string(),
        length,
        prompt_tokens: ids.len(),
        depth,
        seed,
        key,
        correct: first_integer(&output) == Some(u64::from(key)),
        output,
        seconds: t0.elapsed().as_secs_f64(),
    }))
}

/// Accuracy of `trials` per (mode, length, depth), in first-seen order.
pub fn accuracy(trials: &[Trial]) -> Vec<(String, usize, f64, f64, usize)> {
    let mut cells: Vec<(String, usize, f64, usize, usize)> = Vec::new();
    for t in trials {
        match cells
            .iter_mut()
            .find(|c| c.0 == t.mode && c.1 == t.length && c.2 == t.depth)
        {
            Some(c) => {
                c.3 += usize::from(t.correct);
                c.4 += 1;
            }
            None => cells.push((t.mode.clone(), t.length, t.depth, usize::from(t.correct), 1)),
        }
    }
    cells
        .into_iter()
        .map(|(m, l, d, ok, n)| (m, l, d, ok as f64 / n as f64, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkey_prompt_follows_the_template() {
        let p = Task::Passkey.prompt(100, 0.5, 123);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0].len(), 50);
        assert_eq!(lines[2].len(), 50);
        assert!(lines[0].starts_with("The grass is green."));
        assert!(lines[2].starts_with("The grass is green."));
        assert_eq!(
            lines[1],
            "The pass key is 123. Remember it. 123 is the pass key."
        );
        assert_eq!(lines[4], PASSKEY_QUESTION);
    }

    #[test]
    fn needle_sits_at_a_sentence_end_near_the_depth() {
        let task = Task::Needle {
            haystack: "One two. Three four. Five six. Seven eight.".into(),
        };
        let p = task.prompt(43, 0.5, 7);
        assert!(p.starts_with("One two. Three four. The special magic number is 7. Five six."));
        assert!(p.ends_with(NEEDLE_QUESTION));
        let start = task.prompt(43, 0.0, 7);
        assert!(start.starts_with(" The special magic number is 7.One two."));
    }

    #[test]
    fn integers_are_parsed_from_answers() {
        assert_eq!(first_integer(" 4242. Remember"), Some(4242));
        assert_eq!(first_integer("no number"), None);
        assert!((1..50_000).contains(&key_for(3)));
        assert_eq!(key_for(3), key_for(3));
    }
}

//! Retrieval from long inputs: the passkey test (spec §5.2) and a needle in a haystack.
//! A number is hidden at a chosen depth of a haystack sized to a length in tokens; the
//! model is asked for it and answers greedily.
//!
//! Keys come from two disjoint [`Split`]s: `validation`, for choosing weights as often as
//! one likes, and `test`, reported once per shipped file. Trial `t` of a split hides
//! [`key`]`(split, seed, t)`, whatever its depth, length and mode.
//!
//! Every trial has two scores:
//! - *lenient*: the first integer of the first n + 1 answer tokens is the key (n: the key's
//!   own token count; the ∞-Bench passkey rule, which forgives anything after it);
//! - *exact*: the first number of the whole answer is the key and something other than
//!   more digits follows it (or the model ended the answer): what a user reads as the right
//!   answer. The model generates [`AFTER`] tokens beyond the lenient budget to show it.
//!
//! A prompt is plain text (the reference's protocol) or the user's turn of a chat
//! ([`Form`]), whose answer may restate the question first: it gets [`CHAT_LEAD`] more
//! tokens for that, within the lenient budget.

use focus_core::Reading;
use focus_model::{ChatTemplate, LlamaForCausalLM, Message, Tokenizer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

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

/// How a trial's prompt reaches the model.
#[derive(Debug, Clone, Default)]
pub enum Form {
    /// The prompt text as the tokenizer encodes it (the reference's protocol).
    #[default]
    Plain,
    /// The prompt as the user's turn of a chat, after a system turn when `system` is set,
    /// rendered with the model's template; the memory cut message by message when
    /// `messages` (`focus_core::Plan::with_pieces`), else uniformly.
    Chat {
        template: ChatTemplate,
        system: Option<String>,
        messages: bool,
    },
}

impl Form {
    /// `plain`, `chat, messages` or `chat, uniform`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Chat { messages: true, .. } => "chat, messages",
            Self::Chat { .. } => "chat, uniform",
        }
    }

    /// The ids of `text` in this form, and where its pieces begin (none but for a chat cut
    /// message by message).
    pub fn ids(&self, tokenizer: &Tokenizer, text: &str) -> Result<(Vec<u32>, Vec<usize>)> {
        match self {
            Self::Plain => Ok((tokenizer.encode_prompt(text)?, Vec::new())),
            Self::Chat {
                template,
                system,
                messages,
            } => {
                let turns: Vec<Message> = system
                    .iter()
                    .map(|s| Message::new("system", s.as_str()))
                    .chain([Message::new("user", text)])
                    .collect();
                let (ids, starts) = template.prompt_ids_and_starts(tokenizer, &turns)?;
                Ok((ids, if *messages { starts } else { Vec::new() }))
            }
        }
    }
}

/// The prompt tokens of a trial in `form`, and where its pieces begin: the longest
/// haystack whose prompt has at most `length` tokens.
pub fn fit(
    tokenizer: &Tokenizer,
    task: &Task,
    form: &Form,
    length: usize,
    depth: f64,
    key: u32,
) -> Result<(Vec<u32>, Vec<usize>)> {
    let count = |n: usize| form.ids(tokenizer, &task.prompt(n, depth, key));
    let empty = count(0)?;
    if empty.0.len() > length {
        return Err(Error::Input(format!(
            "a {} prompt needs at least {} tokens; {length} is too short",
            task.name(),
            empty.0.len()
        )));
    }
    // Largest n with count(n) <= length, by bisection (counts grow with n).
    let (mut lo, mut hi) = (0usize, length * 8);
    let mut best = empty;
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let ids = count(mid)?;
        if ids.0.len() <= length {
            lo = mid;
            best = ids;
        } else {
            hi = mid - 1;
        }
    }
    Ok(best)
}

/// Answer tokens generated beyond the lenient budget (the key's tokens plus one), so that
/// the exact score sees what follows the number.
pub const AFTER: usize = 3;

/// Tokens a chat's answer may take before the number, on top of the lenient budget.
pub const CHAT_LEAD: usize = 12;

/// The two disjoint sets of evaluation keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// For choosing weights, settings and checkpoints, as often as one likes.
    Validation,
    /// Reported once per shipped file; nothing is chosen by it.
    Test,
}

impl Split {
    /// `validation` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Validation => "validation",
            Self::Test => "test",
        }
    }

    /// The split that the number `k` belongs to: one bit of a hash of its value, so the
    /// numbers 1..=49999 fall about half to each and no number is in both.
    pub fn of_key(k: u32) -> Self {
        if mix(0x6b65_795f_7370_6c69 ^ u64::from(k)) & 1 == 0 {
            Self::Validation
        } else {
            Self::Test
        }
    }

    fn stream(self) -> u64 {
        match self {
            Self::Validation => 0x7661_6c69_6461_7465,
            Self::Test => 0x7465_7374_7465_7374,
        }
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "validation" => Ok(Self::Validation),
            "test" => Ok(Self::Test),
            other => Err(format!("unknown split {other:?} (validation, test)")),
        }
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The key of trial `t` of `split` with `seed`: the first number of 1..=49999 (the
/// reference's range) that belongs to `split`, drawn from a generator seeded from the
/// split, the seed and `t` alone.
pub fn key(split: Split, seed: u64, t: u64) -> u32 {
    let mut rng = StdRng::seed_from_u64(mix(mix(split.stream() ^ seed) ^ t));
    loop {
        let k = rng.random_range(1..50_000);
        if Split::of_key(k) == split {
            return k;
        }
    }
}

/// The first number written in `text`: its digits, with a `,` or `.` between two digits
/// kept as part of it (`26,331` and `263.31` are one number each), and whether any text
/// follows it.
pub fn first_number(text: &str) -> Option<(&str, bool)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let b = text.as_bytes();
    let mut end = start;
    while end < b.len() {
        if b[end].is_ascii_digit() {
            end += 1;
        } else if matches!(b[end], b',' | b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end += 2;
        } else {
            break;
        }
    }
    Some((&text[start..end], end < text.len()))
}

/// The exact score: the first number of `answer` is `key`, and text follows it or the
/// model `ended` the answer there.
pub fn exact(answer: &str, key: u32, ended: bool) -> bool {
    first_number(answer).is_some_and(|(n, followed)| n == key.to_string() && (followed || ended))
}

/// The lenient score of an answer's first `n + 1` tokens (plain) or of its first
/// `n + 1 +` [`CHAT_LEAD`] tokens (chat): the first integer is the key; in a chat, whose
/// budget reaches past the number, the key's digits begin it (what the plain budget's
/// `n + 1` tokens forgive: digits that run on).
fn lenient(text: &str, key: u32, form: &Form) -> bool {
    match form {
        Form::Plain => first_integer(text) == Some(u64::from(key)),
        Form::Chat { .. } => {
            let start = text.find(|c: char| c.is_ascii_digit());
            start.is_some_and(|i| text[i..].starts_with(&key.to_string()))
        }
    }
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    /// `passkey` or `niah`.
    pub task: String,
    /// How the prompt reached the model ([`Form::name`]).
    pub form: String,
    /// `focus`, `truncated` or `full`.
    pub mode: String,
    /// Requested length in tokens.
    pub length: usize,
    /// Actual prompt length in tokens.
    pub prompt_tokens: usize,
    /// Depth of the number in the haystack (0 = start, 1 = end).
    pub depth: f64,
    /// The key split.
    pub split: Split,
    /// Seed of the split's key stream.
    pub seed: u64,
    /// Index of the trial in that stream.
    pub index: u64,
    /// The hidden number.
    pub key: u32,
    /// What the model answered (the lenient budget and [`AFTER`] tokens more, or up to
    /// the end of its answer).
    pub output: String,
    /// Lenient score: the first integer of the first n + 1 answer tokens is the key.
    pub lenient: bool,
    /// Exact score: the answer's first number is the key, and it stops there.
    pub exact: bool,
    /// Wall time of the trial in seconds, and of its read (the prefill, up to the first
    /// answer token's logits); the rest decoded the other answer tokens.
    pub seconds: f64,
    pub prefill_seconds: f64,
    /// Answer tokens generated.
    pub new_tokens: usize,
}

/// Where a trial's key comes from: trial `index` of `split`'s stream with `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef {
    /// The split.
    pub split: Split,
    /// The stream's seed.
    pub seed: u64,
    /// The trial's place in the stream.
    pub index: u64,
}

/// Runs one trial of `task` under `mode`. Returns `None` when the prompt does not fit
/// the mode (full attention beyond the model's context).
// Each argument is one setting of the trial; a struct for one caller would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn trial(
    model: &LlamaForCausalLM,
    tokenizer: &Tokenizer,
    task: &Task,
    form: &Form,
    mode: Reading,
    length: usize,
    depth: f64,
    at: KeyRef,
    progress: impl FnMut(usize, usize),
) -> Result<Option<Trial>> {
    let key = key(at.split, at.seed, at.index);
    let (ids, starts) = fit(tokenizer, task, form, length, depth, key)?;
    let answer = tokenizer.encode(&key.to_string(), false)?;
    // A chat's answer is a turn of its own and may restate the question before the number
    // ("The pass key is 4821."): it gets [`CHAT_LEAD`] more tokens, and its lenient score
    // looks for the number anywhere in them.
    let lead = match form {
        Form::Plain => 0,
        Form::Chat { .. } => CHAT_LEAD,
    };
    let lenient_len = answer.len() + 1 + lead;
    let n_new = lenient_len + AFTER;
    if mode.piece_positions(ids.len(), &starts, n_new) > model.config().max_position_embeddings {
        return Ok(None);
    }
    let t0 = std::time::Instant::now();
    let eos = tokenizer.eos_ids();
    let (out, prefill_seconds) = generate(model, mode, &ids, &starts, n_new, eos, progress)?;
    let ended = out.last().is_some_and(|t| eos.contains(t));
    let output = tokenizer.decode(&out)?;
    let lenient_text = tokenizer.decode(&out[..out.len().min(lenient_len)])?;
    Ok(Some(Trial {
        task: task.name().to_string(),
        form: form.name().into(),
        mode: mode.name().to_string(),
        length,
        prompt_tokens: ids.len(),
        depth,
        split: at.split,
        seed: at.seed,
        index: at.index,
        key,
        lenient: lenient(&lenient_text, key, form),
        exact: exact(&output, key, ended),
        output,
        seconds: t0.elapsed().as_secs_f64(),
        prefill_seconds,
        new_tokens: out.len(),
    }))
}

/// A share of trials that were right.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rate {
    /// Trials right.
    pub right: usize,
    /// Trials.
    pub trials: usize,
}

impl Rate {
    /// `right / trials` (0 without trials).
    pub fn value(&self) -> f64 {
        if self.trials == 0 {
            0.0
        } else {
            self.right as f64 / self.trials as f64
        }
    }

    /// The 95 % Wilson score interval (Wilson 1927), which stays inside [0, 1] and keeps
    /// its coverage at rates near 0 and 1, where the normal approximation fails.
    pub fn wilson(&self) -> (f64, f64) {
        if self.trials == 0 {
            return (0.0, 1.0);
        }
        let z = 1.959_964_f64;
        let n = self.trials as f64;
        let p = self.value();
        let d = 1.0 + z * z / n;
        let centre = (p + z * z / (2.0 * n)) / d;
        let half = z / d * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
        ((centre - half).max(0.0), (centre + half).min(1.0))
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (low, high) = self.wilson();
        let mut st = s.serialize_struct("Rate", 5)?;
        st.serialize_field("right", &self.right)?;
        st.serialize_field("trials", &self.trials)?;
        st.serialize_field("rate", &self.value())?;
        st.serialize_field("low95", &low)?;
        st.serialize_field("high95", &high)?;
        st.end()
    }
}

/// The scores of a group of trials: one (mode, length, depth), or all depths of one
/// (mode, length) when `depth` is `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// `focus`, `truncated` or `full`.
    pub mode: String,
    /// Requested length in tokens.
    pub length: usize,
    /// The depth, or `None` for all depths.
    pub depth: Option<f64>,
    /// The exact score.
    pub exact: Rate,
    /// The lenient score.
    pub lenient: Rate,
}

/// The cells of `trials`: per (mode, length, depth) and per (mode, length) over all depths,
/// in first-seen order.
pub fn cells(trials: &[Trial]) -> Vec<Cell> {
    let mut out: Vec<Cell> = Vec::new();
    for t in trials {
        for depth in [Some(t.depth), None] {
            let i = match out
                .iter()
                .position(|c| c.mode == t.mode && c.length == t.length && c.depth == depth)
            {
                Some(i) => i,
                None => {
                    out.push(Cell {
                        mode: t.mode.clone(),
                        length: t.length,
                        depth,
                        exact: Rate::default(),
                        lenient: Rate::default(),
                    });
                    out.len() - 1
                }
            };
            let c = &mut out[i];
            c.exact.right += usize::from(t.exact);
            c.exact.trials += 1;
            c.lenient.right += usize::from(t.lenient);
            c.lenient.trials += 1;
        }
    }
    out
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
    }

    #[test]
    fn the_splits_share_no_key_and_their_streams_are_fixed() {
        let val: Vec<u32> = (0..2000).map(|t| key(Split::Validation, 0, t)).collect();
        let test: Vec<u32> = (0..2000).map(|t| key(Split::Test, 0, t)).collect();
        assert!(val.iter().all(|&k| Split::of_key(k) == Split::Validation));
        assert!(test.iter().all(|&k| Split::of_key(k) == Split::Test));
        assert!(val.iter().chain(&test).all(|k| (1..50_000).contains(k)));
        // Many distinct keys, a seed changes the stream, and a stream never changes.
        let distinct: std::collections::HashSet<_> = val.iter().collect();
        assert!(distinct.len() > 1900, "{}", distinct.len());
        assert_ne!(key(Split::Test, 1, 0), key(Split::Test, 0, 0));
        assert_eq!(key(Split::Test, 0, 7), test[7]);
        // About half of all numbers in each split.
        let n_test = (1..50_000u32)
            .filter(|&k| Split::of_key(k) == Split::Test)
            .count();
        assert!((24_000..26_000).contains(&n_test), "{n_test}");
        assert_eq!("test".parse::<Split>(), Ok(Split::Test));
        assert!("train".parse::<Split>().is_err());
    }

    #[test]
    fn exact_answers_stop_at_the_number() {
        assert!(exact(" 26331. Remember it.", 26331, false));
        assert!(exact(" 26331", 26331, true));
        // The answer was cut off right after the number: it may have gone on.
        assert!(!exact(" 26331", 26331, false));
        assert!(!exact(" 263333212", 26331, false));
        assert!(!exact(" 192948888", 19294, false));
        assert!(!exact(" 26,331.", 26331, false));
        assert!(!exact(" 26331.5 is it", 26331, false));
        assert!(!exact(" no number", 26331, true));
        assert_eq!(first_number("is 12,345."), Some(("12,345", true)));
    }

    #[test]
    fn a_chats_lenient_score_forgives_digits_that_run_on() {
        let chat = Form::Chat {
            template: ChatTemplate::new("{{ messages[0]['content'] }}", "<s>", "</s>"),
            system: None,
            messages: true,
        };
        assert!(lenient("The pass key is 24997777. The", 24997, &chat));
        assert!(!lenient("The pass key is 2499. The", 24997, &chat));
        assert!(!lenient("The pass key is 14997.", 24997, &chat));
        assert!(!lenient("No number", 24997, &chat));
        // The plain budget is cut at the key's tokens plus one before it is read.
        assert!(lenient(" 24997", 24997, &Form::Plain));
        assert!(!lenient(" 24997777", 24997, &Form::Plain));
    }

    #[test]
    fn wilson_intervals_match_published_values() {
        // Newcombe (1998), Table I: 81/263 gives 0.2553 to 0.3662; 0/10 gives 0 to 0.2775.
        let (lo, hi) = Rate {
            right: 81,
            trials: 263,
        }
        .wilson();
        assert!(
            (lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = Rate {
            right: 0,
            trials: 10,
        }
        .wilson();
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 5e-4, "{hi}");
        // At 40 trials, 38 right rules out a true rate of 80 % and 32 right one of 95 %; at
        // 20 trials, 19 right does not rule out 80 %.
        let (lo, _) = Rate {
            right: 38,
            trials: 40,
        }
        .wilson();
        let (_, hi) = Rate {
            right: 32,
            trials: 40,
        }
        .wilson();
        assert!(lo > 0.80 && hi < 0.95, "{lo} {hi}");
        let (lo, _) = Rate {
            right: 19,
            trials: 20,
        }
        .wilson();
        assert!(lo < 0.80, "{lo}");
    }
}

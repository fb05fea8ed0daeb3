//! Perplexity protocols.
//!
//! - [`Protocol::Focus`] (what the FocusLLM reference intended, spec §5.1): the document
//!   is tokenised without special tokens and cut into windows of `length − 1` tokens
//!   (step `stride`, the last `max_windows` kept); BOS goes in front of each window. The
//!   last `score` tokens of a window are held back: the model reads the rest and predicts
//!   them one at a time, teacher-forced. Perplexity = exp(mean over windows of the mean
//!   token NLL).
//! - [`Protocol::LlamaCpp`] (as `llama-perplexity` does): the text, tokenised as the model
//!   expects (BOS when its tokenizer adds one), is cut into independent chunks of `ctx`
//!   tokens; the first token of a chunk becomes BOS when the tokenizer adds one, and
//!   each chunk is scored on its second half. Perplexity = exp(mean NLL over all scored
//!   tokens).

use std::ops::Range;

use focus_core::Reading;
use focus_model::LlamaForCausalLM;
use serde::Serialize;

use super::{nll, plain_nll};
use crate::error::{Error, Result};

/// Which perplexity protocol to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Windows of `length` tokens (BOS included), the last `score` tokens scored.
    Focus {
        /// Total window length, BOS included.
        length: usize,
        /// Held-back tokens scored per window.
        score: usize,
        /// Step between window starts.
        stride: usize,
        /// Keep only the last this many windows.
        max_windows: usize,
    },
    /// Independent chunks of `ctx` tokens, each scored on its second half.
    LlamaCpp {
        /// Chunk length.
        ctx: usize,
        /// Keep only the first this many chunks (0: all).
        max_chunks: usize,
    },
}

/// The scores of one window or chunk.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Token range of the document the window covers.
    pub start: usize,
    /// End of that range.
    pub end: usize,
    /// NLL (nats) of each scored token.
    pub nll: Vec<f32>,
}

impl Window {
    /// Mean NLL of the window.
    pub fn mean(&self) -> f64 {
        self.nll.iter().map(|&x| f64::from(x)).sum::<f64>() / self.nll.len() as f64
    }
}

/// A perplexity result.
#[derive(Debug, Clone, Serialize)]
pub struct Perplexity {
    /// Reading name (`focus`, `truncated`, `full`).
    pub mode: String,
    /// Perplexity under the protocol's averaging.
    pub ppl: f64,
    /// Scored tokens in total.
    pub tokens: usize,
    /// Per-window scores.
    pub windows: Vec<Window>,
}

/// How much one reading's scored tokens cost against another's on the same tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The first reading's name.
    pub mode: String,
    /// The reading it is compared with.
    pub against: String,
    /// Mean NLL difference (first − second), nats per token.
    pub nats_per_token: f64,
    /// Standard error of that mean over the scored tokens (sample standard deviation of the
    /// token differences / √tokens). Tokens of one window are not independent, so it is a
    /// guide to the noise, not an exact interval.
    pub standard_error: f64,
    /// Scored tokens compared.
    pub tokens: usize,
}

impl Difference {
    /// The token-by-token difference of `a` against `b`, or `None` unless they scored the
    /// same number of tokens in the same windows (at least two).
    pub fn of(a: &Perplexity, b: &Perplexity) -> Option<Self> {
        let same = a.windows.len() == b.windows.len()
            && a.windows
                .iter()
                .zip(&b.windows)
                .all(|(x, y)| (x.start, x.end, x.nll.len()) == (y.start, y.end, y.nll.len()));
        let d: Vec<f64> = a
            .windows
            .iter()
            .zip(&b.windows)
            .flat_map(|(x, y)| {
                x.nll
                    .iter()
                    .zip(&y.nll)
                    .map(|(&p, &q)| f64::from(p) - f64::from(q))
            })
            .collect();
        if !same || d.len() < 2 {
            return None;
        }
        let n = d.len() as f64;
        let mean = d.iter().sum::<f64>() / n;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        Some(Self {
            mode: a.mode.clone(),
            against: b.mode.clone(),
            nats_per_token: mean,
            standard_error: (var / n).sqrt(),
            tokens: d.len(),
        })
    }
}

/// Window ranges of the FocusLLM protocol over a document of `n` tokens: windows of
/// `length − 1` document tokens starting every `stride` tokens, the last `max_windows`
/// kept; one window covering the whole document when it is shorter.
pub fn focus_windows(
    n: usize,
    length: usize,
    stride: usize,
    max_windows: usize,
) -> Vec<Range<usize>> {
    let body = length.saturating_sub(1);
    let mut out = Vec::new();
    if n <= body {
        out.push(0..n);
    } else {
        let mut s = 0;
        while s + body <= n {
            out.push(s..s + body);
            s += stride.max(1);
        }
    }
    let skip = out.len().saturating_sub(max_windows.max(1));
    out.split_off(skip)
}

/// Runs `protocol` on document tokens `doc` (tokenised without special tokens; for
/// [`Protocol::LlamaCpp`] pass the tokens exactly as the model's tokenizer gives them,
/// with BOS first when it adds one, and `add_bos` accordingly).
///
/// `progress` gets (windows done, windows total).
pub fn perplexity(
    model: &LlamaForCausalLM,
    mode: Reading,
    protocol: Protocol,
    doc: &[u32],
    add_bos: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    let bos = model.config().bos_token_id;
    let mut windows = Vec::new();
    match protocol {
        Protocol::Focus {
            length,
            score,
            stride,
            max_windows,
        } => {
            if score == 0 || score + 1 >= length {
                return Err(Error::Input(format!(
                    "cannot score {score} tokens of a {length}-token window"
                )));
            }
            let ranges = focus_windows(doc.len(), length, stride, max_windows);
            if ranges[0].len() <= score {
                return Err(Error::Input(format!(
                    "the text has {} tokens, too few to score {score}",
                    doc.len()
                )));
            }
            let total = ranges.len();
            for (i, r) in ranges.into_iter().enumerate() {
                let mut ids = Vec::with_capacity(r.len() + 1);
                ids.push(bos);
                ids.extend_from_slice(&doc[r.clone()]);
                let (context, targets) = ids.split_at(ids.len() - score);
                let nll = nll(model, mode, context, targets, |_, _| {})?;
                windows.push(Window {
                    start: r.start,
                    end: r.end,
                    nll,
                });
                progress(i + 1, total);
            }
        }
        Protocol::LlamaCpp { ctx, max_chunks } => {
            if ctx < 4 {
                return Err(Error::Input(format!("--ctx {ctx} is too small")));
            }
            let mut n = doc.len() / ctx;
            if max_chunks > 0 {
                n = n.min(max_chunks);
            }
            if n == 0 {
                return Err(Error::Input(format!(
                    "the text has {} tokens, fewer than one chunk of {ctx}",
                    doc.len()
                )));
            }
            let first = ctx / 2;
            for i in 0..n {
                let mut ids = doc[i * ctx..(i + 1) * ctx].to_vec();
                if add_bos {
                    ids[0] = bos;
                }
                let targets = &ids[first + 1..];
                let nll = match mode {
                    Reading::Full => {
                        if !mode.fits(model.config().max_position_embeddings, ctx - 1, 0) {
                            return Err(Error::Input(format!(
                                "--ctx {ctx} exceeds the model's {} positions",
                                model.config().max_position_embeddings
                            )));
                        }
                        plain_nll(model, &ids[..ctx - 1], targets)
                    }
                    _ => nll(model, mode, &ids[..=first], targets, |_, _| {})?,
                };
                windows.push(Window {
                    start: i * ctx,
                    end: (i + 1) * ctx,
                    nll,
                });
                progress(i + 1, n);
            }
        }
    }
    let tokens = windows.iter().map(|w| w.nll.len()).sum();
    let mean = match protocol {
        Protocol::Focus { .. } => {
            windows.iter().map(Window::mean).sum::<f64>() / windows.len() as f64
        }
        Protocol::LlamaCpp { .. } => {
            windows
                .iter()
                .flat_map(|w| w.nll.iter().map(|&x| f64::from(x)))
                .sum::<f64>()
                / tokens as f64
        }
    };
    Ok(Perplexity {
        mode: mode.name().to_string(),
        ppl: mean.exp(),
        tokens,
        windows,
    })
}

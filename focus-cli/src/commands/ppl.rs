//! `focus ppl`: perplexity of long texts, FocusLLM versus the truncated and full baselines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use focus_eval::ppl::{Difference, Perplexity, Protocol, perplexity};
use serde::Serialize;

use crate::args::Format;
use crate::args::{FocusArgs, ModelArgs, parse_len};
use crate::eval_args::{EvalArgs, short_len};
use crate::load::{load_model, read_text};
use crate::output::write_atomic;

/// Perplexity of text files.
///
/// The `focus` protocol (default) cuts each document into windows of `--length` tokens
/// (BOS included; the last `--windows` windows, `--stride` apart) and scores the last
/// `--score` tokens of each, teacher-forced one at a time after the rest. The
/// `llama-cpp` protocol scores the second half of independent `--ctx`-token chunks, as
/// llama.cpp's `llama-perplexity` does; with `--modes full` it is directly comparable.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Text files (UTF-8) to score; `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub focus: FocusArgs,
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Protocol: `focus` (windows, held-back tokens) or `llama-cpp` (chunks, second half).
    #[arg(long, value_enum, default_value = "focus")]
    pub protocol: ProtocolArg,
    /// Window lengths in tokens, BOS included (focus protocol), e.g. 2k,8k,32k.
    #[arg(long, value_delimiter = ',', default_value = "8k", value_parser = parse_len)]
    pub length: Vec<usize>,
    /// Tokens scored at the end of each window (focus protocol; 128 in the reference).
    #[arg(long, default_value_t = 128)]
    pub score: usize,
    /// Step between window starts (focus protocol; default: the window length).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Keep only the last this many windows of each document (focus protocol).
    #[arg(long, default_value_t = 4)]
    pub windows: usize,
    /// Chunk length (llama-cpp protocol).
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score only the first this many chunks (llama-cpp protocol; 0: all).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolArg {
    Focus,
    LlamaCpp,
}

#[derive(Serialize)]
struct Entry {
    file: String,
    document_tokens: usize,
    length: usize,
    results: Vec<Perplexity>,
    /// Modes skipped because the windows do not fit the model.
    skipped: Vec<String>,
    /// FocusLLM against the truncated window, token by token, where both ran.
    differences: Vec<Difference>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    protocol: String,
    local_window: usize,
    chunk: usize,
    score: usize,
    entries: Vec<Entry>,
}

pub fn run(args: Args, quiet: bool) -> Result<()> {
    if let Some(p) = &args.eval.json {
        crate::output::check_writable(p)?;
    }
    let texts = args
        .files
        .iter()
        .map(|p| read_text(p).map(|t| (p.display().to_string(), t)))
        .collect::<Result<Vec<_>>>()?;
    let (loaded, _) = load_model(&args.model, true)?;
    let model = &loaded.model;
    let cfg = args.focus.config(model.config())?;
    let modes = args.eval.modes(&cfg);
    let lens = match args.protocol {
        ProtocolArg::Focus => args.length.clone(),
        ProtocolArg::LlamaCpp => vec![args.ctx],
    };
    let longest = lens.iter().copied().max().unwrap_or(0);
    crate::load::check_memory(model, Some(&cfg), longest + args.score)?;
    let quiet = quiet || args.eval.format == Format::Json;
    let mut entries = Vec::new();
    for (name, text) in &texts {
        let (doc, add_bos) = match args.protocol {
            ProtocolArg::Focus => (loaded.tokenizer.encode(text, false)?, false),
            ProtocolArg::LlamaCpp => {
                let ids = loaded.tokenizer.encode_prompt(text)?;
                let bos = ids.first() == Some(&loaded.tokenizer.bos_id());
                (ids, bos)
            }
        };
        if doc.is_empty() {
            bail!("{name} is empty");
        }
        for &length in &lens {
            let protocol = match args.protocol {
                ProtocolArg::Focus => Protocol::Focus {
                    length,
                    score: args.score,
                    stride: args.stride.unwrap_or(length),
                    max_windows: args.windows,
                },
                ProtocolArg::LlamaCpp => Protocol::LlamaCpp {
                    ctx: args.ctx,
                    max_chunks: args.chunks,
                },
            };
            let mut results = Vec::new();
            let mut skipped = Vec::new();
            for &mode in &modes {
                // Tokens a baseline is handed: a whole window (its BOS included), or a
                // chunk less its last token.
                let need = match args.protocol {
                    ProtocolArg::Focus => length.min(doc.len() + 1),
                    ProtocolArg::LlamaCpp => args.ctx - 1,
                };
                if !mode.fits(model.config().max_position_embeddings, need, 0) {
                    skipped.push(mode.name().to_string());
                    continue;
                }
                let bar = crate::output::progress_bar(quiet, "windows");
                bar.set_message(format!("{} {}", mode.name(), short_len(length)));
                let r = perplexity(model, mode, protocol, &doc, add_bos, |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })
                .with_context(|| format!("{name} at {} tokens", length))?;
                bar.finish_and_clear();
                if !quiet {
                    eprintln!(
                        "{name} {} {}: ppl {:.3} ({} tokens)",
                        short_len(length),
                        r.mode,
                        r.ppl,
                        r.tokens
                    );
                }
                results.push(r);
            }
            let find = |m: &str| results.iter().find(|r| r.mode == m);
            let differences = match (find("focus"), find("truncated")) {
                (Some(a), Some(b)) => Difference::of(a, b),
                _ => None,
            };
            entries.push(Entry {
                file: name.clone(),
                document_tokens: doc.len(),
                length,
                differences: differences.into_iter().collect(),
                results,
                skipped,
            });
        }
    }
    let report = Report {
        model: args.model.model.display().to_string(),
        protocol: match args.protocol {
            ProtocolArg::Focus => "focus".into(),
            ProtocolArg::LlamaCpp => "llama-cpp".into(),
        },
        local_window: cfg.local_window,
        chunk: cfg.chunk_len,
        score: args.score,
        entries,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.eval.json {
        write_atomic(path, json.as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    match args.eval.format {
        Format::Json => writeln!(out, "{json}")?,
        Format::Text => {
            let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
            write!(out, "| file | length |")?;
            for n in &names {
                write!(out, " {n} |")?;
            }
            writeln!(out)?;
            writeln!(out, "|---|---:|{}", "---:|".repeat(names.len()))?;
            for e in &report.entries {
                write!(out, "| {} | {} |", e.file, short_len(e.length))?;
                for n in &names {
                    match e.results.iter().find(|r| r.mode == *n) {
                        Some(r) => write!(out, " {:.3} |", r.ppl)?,
                        None => write!(out, " n/a |")?,
                    }
                }
                writeln!(out)?;
            }
            if report.entries.iter().any(|e| !e.differences.is_empty()) {
                writeln!(out)?;
            }
            for e in &report.entries {
                for d in &e.differences {
                    writeln!(
                        out,
                        "{} {}: {} − {} = {:+.4} ± {:.4} nats per token ({:+.2} % perplexity; \
                         standard error over {} tokens)",
                        e.file,
                        short_len(e.length),
                        d.mode,
                        d.against,
                        d.nats_per_token,
                        d.standard_error,
                        100.0 * d.nats_per_token.exp_m1(),
                        d.tokens
                    )?;
                }
            }
        }
    }
    Ok(())
}

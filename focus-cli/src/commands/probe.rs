//! `focus probe`: where retrieval breaks. A passkey in one chunk of a memory of 1, 2, 4, …
//! chunks, read by the key chunk's own pass, by FocusLLM and by the truncated window
//! (`focus_eval::probe`).

use std::io::Write;

use anyhow::{Result, bail};
use focus_eval::probe::{ProbeCell, ProbeTrial, probe_trial, summarize};
use serde::Serialize;

use crate::args::Format;
use crate::args::{FocusArgs, ModelArgs};
use crate::load::load_model;
use crate::output::write_atomic;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub focus: FocusArgs,
    /// Numbers of memory chunks to probe (the prompt is sized to C·S + W tokens).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub chunks: Vec<usize>,
    /// Trials per chunk count; trial i uses seed `--seed + i` for the key and its place.
    #[arg(long, default_value_t = 4)]
    pub trials: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `text` prints a table; `json` prints one JSON object instead.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also write the JSON results to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    focus_weights: Option<String>,
    local_window: usize,
    chunk: usize,
    separator: Option<u32>,
    cells: Vec<ProbeCell>,
    skipped: usize,
    trials: Vec<ProbeTrial>,
}

pub fn run(args: Args, quiet: bool) -> Result<()> {
    if let Some(p) = &args.json {
        crate::output::check_writable(p)?;
    }
    if args.chunks.is_empty() || args.chunks.contains(&0) {
        bail!("--chunks must be positive numbers");
    }
    if args.trials == 0 {
        bail!("--trials must be positive");
    }
    let (loaded, _) = load_model(&args.model, true)?;
    let model = &loaded.model;
    let cfg = args.focus.config(model.config())?;
    let longest = args.chunks.iter().max().copied().unwrap_or(1) * cfg.chunk_len + cfg.local_window;
    crate::load::check_memory(model, Some(&cfg), longest)?;
    let quiet = quiet || args.format == Format::Json;
    let bar = crate::output::progress_bar(quiet, "trials");
    bar.set_length(args.chunks.len() as u64 * args.trials);
    let (mut trials, mut skipped) = (Vec::new(), 0);
    for &c in &args.chunks {
        for i in 0..args.trials {
            bar.set_message(format!("{c} chunks"));
            match probe_trial(model, &loaded.tokenizer, &cfg, c, args.seed + i)? {
                Some(t) => trials.push(t),
                None => skipped += 1,
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let report = Report {
        model: args.model.model.display().to_string(),
        focus_weights: args
            .model
            .focus_weights
            .as_ref()
            .map(|p| p.display().to_string()),
        local_window: cfg.local_window,
        chunk: cfg.chunk_len,
        separator: cfg.prompt.separator,
        cells: summarize(&trials),
        skipped,
        trials,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json {
        write_atomic(path, json.as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{json}")?,
        Format::Text => {
            writeln!(
                out,
                "| chunks | reading | trials | answer NLL | first digit | whole answer |"
            )?;
            writeln!(out, "|---:|---|---:|---:|---:|---:|")?;
            let pct = |v: f64| format!("{:.0}%", v * 100.0);
            for c in &report.cells {
                writeln!(
                    out,
                    "| {} | {} | {} | {:.2} | {} | {} |",
                    c.chunks,
                    c.how,
                    c.trials,
                    c.answer_nll,
                    pct(c.first_digit),
                    pct(c.all_tokens)
                )?;
            }
            if skipped > 0 {
                writeln!(
                    out,
                    "({skipped} trials skipped: the key straddled two chunks)"
                )?;
            }
        }
    }
    Ok(())
}

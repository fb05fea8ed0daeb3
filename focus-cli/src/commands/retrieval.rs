//! `focus passkey` and `focus niah`: retrieval of a number hidden in a long input, over
//! a grid of lengths and depths, with exact and lenient scores and their 95 % intervals in
//! a table, JSON and a heatmap.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use focus_eval::reserved::held_out_match;
use focus_eval::retrieval::{Cell, Form, KeyRef, Rate, Split, Task, Trial, cells, trial};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::args::Format;
use crate::args::{ChatArgs, FocusArgs, ModelArgs, parse_len};
use crate::eval_args::{EvalArgs, short_len};
use crate::journal::Journal;
use crate::load::{load_model, read_text};
use crate::output::write_atomic;

/// The grid of a retrieval test.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub focus: FocusArgs,
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Prompt lengths in tokens (each prompt is the longest that fits), e.g. 4k,8k,16k.
    #[arg(long, value_delimiter = ',', default_value = "4k,8k,16k", value_parser = parse_len)]
    pub lengths: Vec<usize>,
    /// Depths of the hidden number in the haystack, from 0 (start) to 1 (end).
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,1")]
    pub depths: Vec<f64>,
    /// Trials per cell (length, depth and mode). The trials of a length are numbered depth
    /// by depth, and trial t hides key t of the split: every mode and length reads the same
    /// keys, and no two depths share one.
    #[arg(long, default_value_t = 1)]
    pub trials: u64,
    /// Which keys: `validation` (for choosing weights and settings, as often as one likes)
    /// or `test` (disjoint from it; reported once per shipped weights file).
    #[arg(long, default_value = "validation")]
    pub split: Split,
    /// Seed of the split's key stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Draw the exact-score heatmap (length × depth, one panel per mode) to this PNG file.
    #[arg(long)]
    pub heatmap: Option<PathBuf>,
    /// Append each finished trial to this file (JSON lines) and, when it exists, take the
    /// trials it holds instead of running them again: a long test stopped partway goes on
    /// where it stopped. It records a hash of the settings (model, candidate weights,
    /// haystack, template, FocusLLM settings, dtype and device); another run's journal is
    /// refused.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    #[command(flatten)]
    pub chat: ChatArgs,
}

/// Needle in a haystack: the passkey grid over a haystack of real text.
#[derive(clap::Args, Debug)]
pub struct NiahArgs {
    #[command(flatten)]
    pub grid: Args,
    /// Haystack: a text file or a folder of `.txt` files (joined in name order). The default
    /// is held out: training refuses to read it. Another text is measured too, with a note
    /// that it may be training text.
    #[arg(long, default_value = ".assets/books/alice29.txt")]
    pub haystack: PathBuf,
}

#[derive(Serialize)]
struct Report<'a> {
    task: &'a str,
    /// How the prompts reached the model (`plain`, `chat, messages`, `chat, uniform`).
    form: &'static str,
    model: String,
    focus_weights: Option<String>,
    local_window: usize,
    chunk: usize,
    split: Split,
    seed: u64,
    /// For the needle: the held-out text its haystack is, if it is one.
    haystack_held_out: Option<&'static str>,
    cells: Vec<Cell>,
    skipped: Vec<String>,
    trials: Vec<Trial>,
}

/// Reads a haystack file, or the `.txt` files of a folder in name order.
pub fn read_haystack(path: &Path) -> Result<String> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("no .txt files in {}", path.display());
        }
        let texts = files
            .iter()
            .map(|p| read_text(p))
            .collect::<Result<Vec<_>>>()?;
        Ok(texts.join("\n\n"))
    } else if path.exists() {
        read_text(path)
    } else {
        bail!(
            "haystack {} not found (run scripts/fetch-assets.sh for the essays)",
            path.display()
        )
    }
}

pub fn run_passkey(args: Args, quiet: bool) -> Result<()> {
    run(args, Task::Passkey, None, quiet)
}

pub fn run_niah(args: NiahArgs, quiet: bool) -> Result<()> {
    let haystack = read_haystack(&args.haystack)?;
    if haystack.trim().is_empty() {
        bail!("the haystack {} is empty", args.haystack.display());
    }
    let held_out = held_out_match(&haystack).map(|h| h.name);
    if held_out.is_none() && !quiet {
        eprintln!(
            "note: the haystack {} is not a held-out text; if training read it, this measures \
             retrieval from training text",
            args.haystack.display()
        );
    }
    run(args.grid, Task::Needle { haystack }, held_out, quiet)
}

fn run(args: Args, task: Task, held_out: Option<&'static str>, quiet: bool) -> Result<()> {
    let lens = args.lengths.clone();
    for p in args.eval.json.iter().chain(&args.heatmap) {
        crate::output::check_writable(p)?;
    }
    if args.depths.is_empty() || args.depths.iter().any(|d| !(0.0..=1.0).contains(d)) {
        bail!("--depths must be numbers between 0 and 1");
    }
    if args.trials == 0 {
        bail!("--trials must be positive");
    }
    if let Some(p) = &args.heatmap
        && p.extension().is_none_or(|x| x != "png")
    {
        bail!("--heatmap {} must end in .png", p.display());
    }
    let (loaded, _) = load_model(&args.model, true)?;
    let model = &loaded.model;
    let cfg = args.focus.config(model.config())?;
    let form = match (args.chat.chat, &loaded.chat_template) {
        (false, _) => Form::Plain,
        (true, None) => bail!("--chat: the model carries no chat template"),
        (true, Some(t)) => Form::Chat {
            template: t.clone(),
            system: args.chat.system.clone(),
            messages: args.chat.by_messages(),
        },
    };
    let mut journal = match &args.journal {
        Some(p) => Some(Journal::open(p, &fingerprint(&args, &task, &form, &cfg)?)?),
        None => None,
    };
    if let Some(j) = journal.as_ref().filter(|j| j.held() > 0 && !quiet) {
        eprintln!("journal: {} trials done before", j.held());
    }
    let modes = args.eval.modes(&cfg);
    let longest = lens.iter().copied().max().unwrap_or(0);
    crate::load::check_memory(model, Some(&cfg), longest)?;
    let quiet = quiet || args.eval.format == Format::Json;
    let total = modes.len() * lens.len() * args.depths.len() * args.trials as usize;
    let bar = crate::output::progress_bar(quiet, "trials");
    bar.set_length(total as u64);
    let mut trials = Vec::new();
    let mut skipped = Vec::new();
    for &length in &lens {
        for &mode in &modes {
            for (d, &depth) in args.depths.iter().enumerate() {
                for i in 0..args.trials {
                    bar.set_message(format!(
                        "{} {} depth {depth}",
                        mode.name(),
                        short_len(length)
                    ));
                    let at = KeyRef {
                        split: args.split,
                        seed: args.seed,
                        index: d as u64 * args.trials + i,
                    };
                    let done = journal
                        .as_mut()
                        .and_then(|j| j.take(mode.name(), length, depth, at));
                    let t = match done {
                        Some(t) => Some(t),
                        None => {
                            let t = trial(
                                model,
                                &loaded.tokenizer,
                                &task,
                                &form,
                                mode,
                                length,
                                depth,
                                at,
                                |_, _| {},
                            )?;
                            if let (Some(j), Some(t)) = (journal.as_mut(), &t) {
                                j.record(t)?;
                            }
                            t
                        }
                    };
                    bar.inc(1);
                    match t {
                        Some(t) => {
                            tracing::info!(
                                mode = %t.mode, length, depth, key = t.key, output = %t.output,
                                exact = t.exact, lenient = t.lenient, "trial"
                            );
                            trials.push(t);
                        }
                        None => {
                            let s = format!("{} {}", mode.name(), short_len(length));
                            if !skipped.contains(&s) {
                                skipped.push(s);
                            }
                        }
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    let report = Report {
        task: task.name(),
        form: form.name(),
        model: args.model.model.display().to_string(),
        focus_weights: args
            .model
            .focus_weights
            .as_ref()
            .map(|p| p.display().to_string()),
        local_window: cfg.local_window,
        chunk: cfg.chunk_len,
        split: args.split,
        seed: args.seed,
        haystack_held_out: held_out,
        cells: cells(&trials),
        skipped,
        trials,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.eval.json {
        write_atomic(path, json.as_bytes())?;
    }
    let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
    let cell = |mode: &str, length: usize, depth: Option<f64>| -> Option<&Cell> {
        report
            .cells
            .iter()
            .find(|c| c.mode == mode && c.length == length && c.depth == depth)
    };
    if let Some(path) = &args.heatmap {
        let panels: Vec<crate::plot::Panel> = names
            .iter()
            .map(|&mode| crate::plot::Panel {
                title: mode.to_string(),
                values: lens
                    .iter()
                    .map(|&l| {
                        args.depths
                            .iter()
                            .map(|&d| cell(mode, l, Some(d)).map(|c| c.exact.value()))
                            .collect()
                    })
                    .collect(),
            })
            .collect();
        let cols: Vec<String> = lens.iter().map(|&l| short_len(l)).collect();
        let rows: Vec<String> = args.depths.iter().map(|d| format!("{d}")).collect();
        let title = format!(
            "{} exact, {} split, W={} S={}",
            task.name(),
            args.split.name(),
            cfg.local_window,
            cfg.chunk_len
        );
        crate::plot::draw(path, &title, &cols, &rows, &panels)?;
    }
    let mut out = std::io::stdout().lock();
    match args.eval.format {
        Format::Json => writeln!(out, "{json}")?,
        Format::Text => {
            writeln!(
                out,
                "{} split, seed {}, {} prompts: exact = the answer is the number and stops \
                 there; lenient = the number begins the answer; 95 % Wilson intervals",
                args.split.name(),
                args.seed,
                form.name()
            )?;
            write!(out, "| mode | length | trials | exact | lenient |")?;
            for d in &args.depths {
                write!(out, " exact at {d} |")?;
            }
            writeln!(out)?;
            writeln!(
                out,
                "|---|---:|---:|---:|---:|{}",
                "---:|".repeat(args.depths.len())
            )?;
            let rate = |r: &Rate| {
                let (lo, hi) = r.wilson();
                format!(
                    "{}/{} ({:.0}–{:.0} %)",
                    r.right,
                    r.trials,
                    lo * 100.0,
                    hi * 100.0
                )
            };
            for &mode in &names {
                for &l in &lens {
                    let Some(all) = cell(mode, l, None) else {
                        writeln!(out, "| {mode} | {} | 0 | n/a | n/a |", short_len(l))?;
                        continue;
                    };
                    write!(
                        out,
                        "| {mode} | {} | {} | {} | {} |",
                        short_len(l),
                        all.exact.trials,
                        rate(&all.exact),
                        rate(&all.lenient)
                    )?;
                    for &d in &args.depths {
                        let v = cell(mode, l, Some(d)).map_or("n/a".into(), |c| {
                            format!("{}/{}", c.exact.right, c.exact.trials)
                        });
                        write!(out, " {v} |")?;
                    }
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(())
}

/// What a trial's outcome depends on besides its place in the grid, hashed: the model's
/// files, the candidate weights, the task and its haystack, how the prompt reaches the
/// model, the FocusLLM settings, the float types and the device.
fn fingerprint(
    args: &Args,
    task: &Task,
    form: &Form,
    cfg: &focus_core::FocusConfig,
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"focus trial settings 1");
    crate::load::hash_model(&mut h, &args.model.model)?;
    if let Some(w) = &args.model.focus_weights {
        crate::load::hash_file(&mut h, w)?;
    }
    h.update(format!("{task:?}\n{form:?}\n{cfg:?}\n"));
    h.update(format!(
        "{} {:?} {}",
        args.model.dtype.name(),
        args.model.chunk_cache_dtype.map(|d| d.name()),
        args.model.device
    ));
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

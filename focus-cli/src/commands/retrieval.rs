//! `focus passkey` and `focus niah`: retrieval of a number hidden in a long input, over
//! a grid of lengths and depths, with a table, JSON and a heatmap.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use focus_eval::retrieval::{Task, Trial, accuracy, trial};
use serde::Serialize;

use crate::common::Format;
use crate::common::{FocusArgs, ModelArgs, load_model, read_text, write_atomic};
use crate::eval_args::{EvalArgs, lengths, short_len};

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
    #[arg(long, value_delimiter = ',', default_value = "4k,8k,16k")]
    pub lengths: Vec<String>,
    /// Depths of the hidden number in the haystack, from 0 (start) to 1 (end).
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,1")]
    pub depths: Vec<f64>,
    /// Trials per cell; trial i uses seed `--seed + i` for its number.
    #[arg(long, default_value_t = 1)]
    pub trials: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Draw the accuracy heatmap (length × depth, one panel per mode) to this PNG file.
    #[arg(long)]
    pub heatmap: Option<PathBuf>,
}

/// Needle in a haystack: the passkey grid over a haystack of real text.
#[derive(clap::Args, Debug)]
pub struct NiahArgs {
    #[command(flatten)]
    pub grid: Args,
    /// Haystack: a text file or a folder of `.txt` files (joined in name order).
    #[arg(long, default_value = ".assets/essays")]
    pub haystack: PathBuf,
}

#[derive(Serialize)]
struct Cell {
    mode: String,
    length: usize,
    depth: f64,
    accuracy: f64,
    trials: usize,
}

#[derive(Serialize)]
struct Report<'a> {
    task: &'a str,
    model: String,
    local_window: usize,
    chunk: usize,
    accuracy: Vec<Cell>,
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
    run(args, Task::Passkey, quiet)
}

pub fn run_niah(args: NiahArgs, quiet: bool) -> Result<()> {
    let haystack = read_haystack(&args.haystack)?;
    if haystack.trim().is_empty() {
        bail!("the haystack {} is empty", args.haystack.display());
    }
    run(args.grid, Task::Needle { haystack }, quiet)
}

fn run(args: Args, task: Task, quiet: bool) -> Result<()> {
    let lens = lengths(&args.lengths)?;
    for p in args.eval.json.iter().chain(&args.heatmap) {
        crate::common::check_writable(p)?;
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
    let (loaded, device) = load_model(&args.model, true)?;
    let model = &loaded.model;
    let cfg = args.focus.config(model.config())?;
    let modes = args.eval.modes(&cfg)?;
    let longest = lens.iter().copied().max().unwrap_or(0);
    crate::common::check_memory(&device, model.config(), Some(&cfg), longest)?;
    let quiet = quiet || args.eval.format == Format::Json;
    let total = modes.len() * lens.len() * args.depths.len() * args.trials as usize;
    let bar = crate::common::progress_bar(quiet, "trials");
    bar.set_length(total as u64);
    let mut trials = Vec::new();
    let mut skipped = Vec::new();
    for &length in &lens {
        for &mode in &modes {
            for &depth in &args.depths {
                for i in 0..args.trials {
                    bar.set_message(format!(
                        "{} {} depth {depth}",
                        mode.name(),
                        short_len(length)
                    ));
                    let seed = args.seed + i;
                    let t = trial(
                        model,
                        &loaded.tokenizer,
                        &task,
                        mode,
                        length,
                        depth,
                        seed,
                        |_, _| {},
                    )?;
                    bar.inc(1);
                    match t {
                        Some(t) => {
                            tracing::info!(
                                mode = %t.mode, length, depth, key = t.key, output = %t.output,
                                correct = t.correct, "trial"
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
    let cells: Vec<Cell> = accuracy(&trials)
        .into_iter()
        .map(|(mode, length, depth, accuracy, trials)| Cell {
            mode,
            length,
            depth,
            accuracy,
            trials,
        })
        .collect();
    let report = Report {
        task: task.name(),
        model: args.model.model.display().to_string(),
        local_window: cfg.local_window,
        chunk: cfg.chunk_len,
        accuracy: cells,
        skipped,
        trials,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.eval.json {
        write_atomic(path, json.as_bytes())?;
    }
    let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
    let acc = |mode: &str, length: usize, depth: Option<f64>| -> Option<f64> {
        let v: Vec<&Cell> = report
            .accuracy
            .iter()
            .filter(|c| c.mode == mode && c.length == length && depth.is_none_or(|d| c.depth == d))
            .collect();
        let n: usize = v.iter().map(|c| c.trials).sum();
        (n > 0).then(|| v.iter().map(|c| c.accuracy * c.trials as f64).sum::<f64>() / n as f64)
    };
    if let Some(path) = &args.heatmap {
        let panels: Vec<crate::plot::Panel> = names
            .iter()
            .map(|&mode| crate::plot::Panel {
                title: mode.to_string(),
                values: lens
                    .iter()
                    .map(|&l| args.depths.iter().map(|&d| acc(mode, l, Some(d))).collect())
                    .collect(),
            })
            .collect();
        let cols: Vec<String> = lens.iter().map(|&l| short_len(l)).collect();
        let rows: Vec<String> = args.depths.iter().map(|d| format!("{d}")).collect();
        let title = format!(
            "{} accuracy, W={} S={}",
            task.name(),
            cfg.local_window,
            cfg.chunk_len
        );
        crate::plot::draw(path, &title, &cols, &rows, &panels)?;
    }
    let mut out = std::io::stdout().lock();
    match args.eval.format {
        Format::Json => writeln!(out, "{json}")?,
        Format::Text => {
            write!(out, "| mode | length |")?;
            for d in &args.depths {
                write!(out, " depth {d} |")?;
            }
            writeln!(out, " all |")?;
            writeln!(out, "|---|---:|{}---:|", "---:|".repeat(args.depths.len()))?;
            let fmt =
                |v: Option<f64>| v.map_or("n/a".to_string(), |a| format!("{:.0}%", a * 100.0));
            for &mode in &names {
                for &l in &lens {
                    write!(out, "| {mode} | {} |", short_len(l))?;
                    for &d in &args.depths {
                        write!(out, " {} |", fmt(acc(mode, l, Some(d))))?;
                    }
                    writeln!(out, " {} |", fmt(acc(mode, l, None)))?;
                }
            }
        }
    }
    Ok(())
}

//! `focus`: FocusLLM long-context inference, evaluation and benchmarks on burn.

mod args;
mod commands;
mod device;
mod eval_args;
mod journal;
mod load;
mod output;
mod plot;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use commands::{bench, generate, inspect, memory, plot_log, ppl, probe, retrieval, serve, train};

/// FocusLLM: long-context inference for a frozen decoder, by parallel decoding of
/// memory chunks (Li et al., arXiv 2408.11745).
#[derive(Parser, Debug)]
#[command(name = "focus", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Print only results (no progress bars, no log lines).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Log level filter for diagnostics on stderr (e.g. `info`, `focus=debug`).
    #[arg(long, global = true, env = "FOCUS_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a continuation of a prompt, with FocusLLM memory for long inputs.
    Generate(generate::Args),
    /// Show what a model file or directory holds.
    Inspect(inspect::Args),
    /// Measure prefill and decode throughput and peak memory, FocusLLM versus full attention.
    Bench(bench::Args),
    /// Perplexity of text files: FocusLLM, truncated context and full attention.
    Ppl(ppl::Args),
    /// Passkey retrieval over a grid of lengths and depths (table, JSON, heatmap).
    Passkey(retrieval::Args),
    /// Needle in a haystack of real text (essays by default), same grid and outputs.
    Niah(retrieval::NiahArgs),
    /// Where retrieval breaks: a passkey in one of C memory chunks, read by that chunk's
    /// own pass, by FocusLLM and by the truncated window.
    Probe(probe::Args),
    /// Train the candidate projections on text files (the base model stays frozen).
    Train(train::Args),
    /// Draw the loss curves of a training run (RUN/log.jsonl) to a PNG.
    PlotLog(plot_log::Args),
    /// Serve the model over HTTP with the OpenAI API (chat and text completions,
    /// streaming or not), FocusLLM settings per request.
    Serve(serve::Args),
    /// The document memory on disk (--memory-dir): read a document into it ahead of
    /// questions, list it, clear it.
    Memory(memory::Args),
}

impl Command {
    /// Fills in what the candidate weights file records (its prompt cap) where the
    /// command line leaves it out.
    fn take_weight_settings(&mut self) -> anyhow::Result<()> {
        let (model, focus) = match self {
            Command::Generate(a) => (&a.model, &mut a.focus),
            Command::Bench(a) => (&a.model, &mut a.focus),
            Command::Ppl(a) => (&a.model, &mut a.focus),
            Command::Passkey(a) => (&a.model, &mut a.focus),
            Command::Niah(a) => (&a.grid.model, &mut a.grid.focus),
            Command::Probe(a) => (&a.model, &mut a.focus),
            Command::Serve(a) => (&a.model, &mut a.focus),
            // Training sets its own cap; the others read no candidate weights or no prompt.
            Command::Train(_) | Command::Inspect(_) | Command::PlotLog(_) | Command::Memory(_) => {
                return Ok(());
            }
        };
        focus.prompt.default_from(model.focus_weights.as_deref())
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    device::read_env();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("error: {}", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()),
        )
        .without_time()
        .init();
    let mut command = cli.command;
    if let Err(e) = command.take_weight_settings() {
        eprintln!("error: {}", one_line(&e));
        return ExitCode::from(2);
    }
    let result = match command {
        Command::Generate(a) => generate::run(a, cli.quiet),
        Command::Inspect(a) => inspect::run(a),
        Command::Bench(a) => bench::run(a, cli.quiet),
        Command::Ppl(a) => ppl::run(a, cli.quiet),
        Command::Passkey(a) => retrieval::run_passkey(a, cli.quiet),
        Command::Niah(a) => retrieval::run_niah(a, cli.quiet),
        Command::Probe(a) => probe::run(a, cli.quiet),
        Command::Train(a) => train::run(a, cli.quiet),
        Command::PlotLog(a) => plot_log::run(a),
        Command::Serve(a) => serve::run(a, cli.quiet),
        Command::Memory(a) => memory::run(a, cli.quiet),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of the output went away (`| head`): nothing left to tell it.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, each cause left out when the message before it
/// already ends with it (library errors that name a file also show the I/O error inside).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.ends_with(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out
}

/// A usage error of the command line on one line: clap's message and its notes (the values
/// an option takes), without the pointer to `--help`.
fn usage_line(e: &clap::Error) -> String {
    e.render()
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Has the C library's allocator keep freed memory for the next allocation rather than
/// give it back to the system: no `mmap` per large block, no trimming of the heap's top.
/// The CPU backend allocates a fresh buffer for nearly every operation, many of them tens
/// of megabytes; by default each is mapped, faulted in page by page and unmapped again.
/// Measured (docs/benchmarks.md): a 32K-token read from the document store 13 % faster, peak
/// resident memory 0.3 % higher.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets the allocator's parameters; it runs before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

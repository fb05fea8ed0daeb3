//! `focus memory`: the document memory on disk (`--memory-dir`), filled ahead of questions,
//! listed and cleared.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use focus_core::{ChunkMemory, DiskStore};
use serde::Serialize;

use crate::args::{FocusArgs, Format, InputArgs, ModelArgs, StoreArgs};
use crate::load::{load_model, open_store};

/// Read a document into the disk store ahead of questions, list the store, or clear it.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Read a document's chunks into --memory-dir: every full chunk of S tokens from the
    /// document's first token, as a later prompt that begins with the document cuts it
    /// (the same model, device, float type and --chunk).
    Add(Box<AddArgs>),
    /// List the entries of --memory-dir (of every model), most recently used first.
    List(DirArgs),
    /// Remove every entry of --memory-dir.
    Clear(DirArgs),
}

#[derive(clap::Args, Debug)]
struct AddArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    focus: FocusArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Output: a line of text, or one JSON object.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(clap::Args, Debug)]
struct DirArgs {
    /// The store's folder.
    #[arg(long)]
    memory_dir: PathBuf,
    /// Output: a table, or one JSON object.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// What `add` did.
#[derive(Serialize)]
struct Added {
    tokens: usize,
    chunk: usize,
    chunks: usize,
    /// Chunks found in the store, and chunks computed and written.
    found: usize,
    written: usize,
    seconds: f64,
    store: Usage,
}

#[derive(Serialize)]
struct Usage {
    dir: String,
    entries: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct Entry {
    file: String,
    tokens: Option<usize>,
    bytes: u64,
    /// Seconds since the Unix epoch.
    last_used: u64,
}

pub fn run(args: Args, quiet: bool) -> Result<()> {
    match args.action {
        Action::Add(a) => add(*a, quiet),
        Action::List(a) => list(a),
        Action::Clear(a) => clear(a),
    }
}

fn add(args: AddArgs, quiet: bool) -> Result<()> {
    let Some(dir) = args.store.memory_dir.clone() else {
        bail!("memory add needs --memory-dir");
    };
    // A chunk's keys and values come from the base projections alone: no candidate weights.
    let (loaded, device) = load_model(&args.model, false)?;
    let model = &loaded.model;
    let cfg = args.focus.config(model.config())?;
    let ids = args.input.ids(&loaded)?;
    let s = cfg.chunk_len;
    let chunks: Vec<&[u32]> = ids.chunks_exact(s).collect();
    if chunks.is_empty() {
        bail!(
            "the document has {} tokens, fewer than one chunk of {s}: nothing to keep",
            ids.len()
        );
    }
    let store = open_store(&args.store, &args.model, &device)?.expect("--memory-dir is set");
    let mut memory = ChunkMemory::new(0).with_store(store);
    let bar = crate::output::progress_bar(quiet || args.format == Format::Json, "chunks");
    bar.set_length(chunks.len() as u64);
    let t0 = Instant::now();
    for batch in chunks.chunks(cfg.max_batch) {
        memory.read(model, batch);
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    for note in memory.take_notes() {
        tracing::warn!("{note}");
    }
    let store = memory.store().expect("a store");
    let (bytes, entries) = store
        .usage()
        .with_context(|| format!("--memory-dir {}", dir.display()))?;
    let added = Added {
        tokens: ids.len(),
        chunk: s,
        chunks: chunks.len(),
        found: store.hits,
        written: store.writes,
        seconds: t0.elapsed().as_secs_f64(),
        store: Usage {
            dir: dir.display().to_string(),
            entries,
            bytes,
        },
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&added)?)?,
        Format::Text => writeln!(
            out,
            "{} tokens: {} chunks of {s} ({} already in the store, {} computed and written) in {:.1} s; \
             {}: {} entries, {}",
            added.tokens,
            added.chunks,
            added.found,
            added.written,
            added.seconds,
            added.store.dir,
            entries,
            size(bytes)
        )?,
    }
    Ok(())
}

fn list(args: DirArgs) -> Result<()> {
    let listed = read_dir(&args.memory_dir, DiskStore::list)?;
    let entries: Vec<Entry> = listed
        .into_iter()
        .map(|l| Entry {
            file: l
                .file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            tokens: l.tokens,
            bytes: l.bytes,
            last_used: l
                .last_used
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
        .collect();
    let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let usage = Usage {
                dir: args.memory_dir.display().to_string(),
                entries: entries.len(),
                bytes,
            };
            let all = serde_json::json!({"store": usage, "entries": entries});
            writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        }
        Format::Text => {
            writeln!(
                out,
                "{}: {} entries, {}",
                args.memory_dir.display(),
                entries.len(),
                size(bytes)
            )?;
            if !entries.is_empty() {
                writeln!(out, "| entry | tokens | size | last used |")?;
                writeln!(out, "|---|---:|---:|---:|")?;
            }
            for e in &entries {
                let tokens = e
                    .tokens
                    .map_or_else(|| "unreadable".into(), |t| t.to_string());
                // The key's first 16 hex digits name an entry well enough to tell them apart.
                let name = e.file.get(..16).unwrap_or(&e.file);
                writeln!(
                    out,
                    "| {name} | {tokens} | {} | {} |",
                    size(e.bytes),
                    ago(e.last_used)
                )?;
            }
        }
    }
    Ok(())
}

fn clear(args: DirArgs) -> Result<()> {
    let (files, bytes) = read_dir(&args.memory_dir, DiskStore::clear)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({"dir": args.memory_dir.display().to_string(),
                               "removed": files, "bytes": bytes})
        )?,
        Format::Text => writeln!(
            out,
            "{}: removed {files} files, {}",
            args.memory_dir.display(),
            size(bytes)
        )?,
    }
    Ok(())
}

/// `f` over an existing store folder (a missing one is an error, not an empty store: a
/// mistyped path should not read as "nothing kept").
fn read_dir<T>(
    dir: &std::path::Path,
    f: impl Fn(&std::path::Path) -> std::io::Result<T>,
) -> Result<T> {
    if !dir.is_dir() {
        bail!("--memory-dir {}: no such folder", dir.display());
    }
    f(dir).with_context(|| format!("--memory-dir {}", dir.display()))
}

/// Bytes in kB, MB or GB, three digits.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match b {
        b if b < 1e6 => format!("{:.1} kB", b / 1e3),
        b if b < 1e9 => format!("{:.1} MB", b / 1e6),
        b => format!("{:.2} GB", b / 1e9),
    }
}

/// How long ago a Unix time was, in the largest whole unit.
fn ago(unix: u64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = now.saturating_sub(unix);
    match s {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

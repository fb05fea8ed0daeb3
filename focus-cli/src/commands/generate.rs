//! `focus generate`: streaming generation with FocusLLM memory.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use focus_core::{ChunkMemory, CondensingModel, Reading, Sampler, Session};
use serde::Serialize;

use crate::args::{ChatArgs, FocusArgs, Format, InputArgs, ModelArgs, StoreArgs};
use crate::load::load_model;

/// Generate a continuation of a prompt.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub focus: FocusArgs,
    /// Plain decoder with full attention over the whole input (no memory).
    #[arg(long)]
    pub no_focus: bool,
    /// Number of tokens to generate (generation also stops at an end-of-sequence token).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub chat: ChatArgs,
    /// Output: `text` streams tokens; `json` prints one object at the end.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Serialize)]
struct Report {
    generated_ids: Vec<u32>,
    text: String,
    top_logits: Vec<(u32, f32)>,
    plan: PlanReport,
    timings: Timings,
    /// The disk store's lookups during this read (with `--memory-dir`).
    store: Option<StoreReport>,
}

#[derive(Serialize)]
struct StoreReport {
    hits: usize,
    misses: usize,
    damaged: usize,
    writes: usize,
    /// Entries read for their first rows, and the rows so reused (chunks computed from where
    /// they part from a stored one).
    prefix_hits: usize,
    prefix_tokens: usize,
}

#[derive(Serialize)]
struct PlanReport {
    input_tokens: usize,
    chunks: usize,
    local_tokens: usize,
    prompt_tokens: usize,
    focus: bool,
}

#[derive(Serialize)]
struct Timings {
    prefill_s: f64,
    decode_s: f64,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
}

fn top_k(v: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = v.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
    idx.sort_by(|a, b| b.1.total_cmp(&a.1));
    idx.truncate(k);
    idx
}

pub fn run(args: Args, quiet: bool) -> Result<()> {
    let (loaded, device) = load_model(&args.model, !args.no_focus)?;
    let cfg = loaded.model.config();
    let (ids, starts) = if args.chat.chat {
        let (ids, starts) = args.input.chat_ids(&loaded, args.chat.system.as_deref())?;
        (
            ids,
            if args.chat.by_messages() {
                starts
            } else {
                Vec::new()
            },
        )
    } else {
        (args.input.ids(&loaded)?, Vec::new())
    };
    let reading = if args.no_focus {
        Reading::Full
    } else {
        Reading::Focus(args.focus.config(cfg)?)
    };
    let positions = reading.piece_positions(ids.len(), &starts, args.max_new_tokens);
    if positions > cfg.max_position_embeddings {
        anyhow::bail!(
            "{} input tokens plus {} new ones exceed the model's context ({} positions){}",
            ids.len(),
            args.max_new_tokens,
            cfg.max_position_embeddings,
            match reading {
                Reading::Full => "; drop --no-focus to use FocusLLM memory",
                _ => " with this local window",
            }
        );
    }
    let focus_cfg = match &reading {
        Reading::Focus(c) => Some(c),
        _ => None,
    };
    crate::load::check_memory(&loaded.model, focus_cfg, ids.len() + args.max_new_tokens)?;
    let bar = crate::output::progress_bar(quiet || args.format == Format::Json, "chunks");
    let mut memory = ChunkMemory::new(0);
    if let Some(store) = crate::load::open_store(&args.store, &args.model, &device)? {
        memory = memory.with_store(store);
    }
    let t0 = Instant::now();
    let (mut session, logits) = Session::read_with_memory(
        &loaded.model,
        reading,
        cfg.bos_token_id,
        &ids,
        &starts,
        &mut memory,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    for note in memory.take_notes() {
        tracing::warn!("{note}");
    }
    let store = memory.store().map(|s| StoreReport {
        hits: s.hits,
        misses: s.misses,
        damaged: s.damaged,
        writes: s.writes,
        prefix_hits: s.prefix_hits,
        prefix_tokens: memory.extended_tokens,
    });
    let first = loaded.model.logits_row(logits);
    let prefill_s = t0.elapsed().as_secs_f64();
    let top_logits = top_k(&first, 20);
    let mut sampler = Sampler::new(args.temperature, args.top_p, args.seed);
    let eos = loaded.tokenizer.eos_ids().to_vec();
    let mut stream = loaded.tokenizer.stream();
    let mut out = std::io::stdout().lock();
    // Streaming: text is printed as soon as it is whole (no half of a multi-byte character).
    let mut failure: Option<anyhow::Error> = None;
    let t1 = Instant::now();
    let generated = session.generate(first, &mut sampler, args.max_new_tokens, &eos, |token| {
        // The end-of-sequence token ends the text; it is not part of it.
        if args.format != Format::Text || eos.contains(&token) {
            return true;
        }
        let streamed = stream
            .push(token)
            .map_err(anyhow::Error::from)
            .and_then(|new| {
                if let Some(new) = new {
                    write!(out, "{new}")?;
                    out.flush()?;
                }
                Ok(())
            });
        match streamed {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let shown = match generated.split_last() {
        Some((last, rest)) if eos.contains(last) => rest,
        _ => &generated[..],
    };
    let text = loaded.tokenizer.decode(shown)?;
    match args.format {
        Format::Text => {
            if let Some(rest) = text.strip_prefix(stream.sent()) {
                write!(out, "{rest}")?;
            }
            writeln!(out)?;
        }
        Format::Json => {
            let plan = session.plan();
            let chunks = plan.map_or(0, |p| p.num_chunks());
            let report = Report {
                generated_ids: generated.clone(),
                text,
                top_logits,
                plan: PlanReport {
                    input_tokens: ids.len(),
                    chunks,
                    local_tokens: plan.map_or(ids.len(), |p| p.local.len()),
                    prompt_tokens: match plan {
                        Some(p) if chunks > 0 => p.prompt.len(),
                        _ => 0,
                    },
                    focus: !args.no_focus,
                },
                timings: Timings {
                    prefill_s,
                    decode_s,
                    prefill_tokens_per_s: ids.len() as f64 / prefill_s,
                    decode_tokens_per_s: generated.len().saturating_sub(1) as f64
                        / decode_s.max(1e-9),
                },
                store,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
    }
    Ok(())
}

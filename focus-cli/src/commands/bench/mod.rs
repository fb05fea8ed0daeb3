//! `focus bench`: prefill and decode throughput and peak memory against context length,
//! FocusLLM versus full attention. Prints a table and writes JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::prelude::*;
use focus_core::{
    ChunkMemory, CondensingModel, Decode, DiskStore, FocusConfig, Reading, Sampler, Session,
};
use focus_model::cost::Widths;
use focus_model::{LayerKv, LlamaConfig, LlamaForCausalLM};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

mod report;

pub use report::{BenchMode, Phase, Ratio, Roofline, Row};
use report::{Output, median, parse_roofline, print_table, ratios};

use crate::args::{FocusArgs, ModelArgs, StoreArgs, parse_len, parse_len_or_none};
use crate::load::{self, load_model};
use crate::output::{progress_bar, write_atomic};

/// Measure throughput and memory.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Use randomly initialised weights of a known shape instead of --model
    /// (throughput does not depend on the values): smollm2-135m, llama-1b.
    #[arg(long)]
    pub random: Option<String>,
    #[command(flatten)]
    pub focus: FocusArgs,
    /// Prefill lengths in tokens (k = 1024), e.g. 512,2k,16k.
    #[arg(long, value_delimiter = ',', default_value = "512,2048", value_parser = parse_len)]
    pub prefill: Vec<usize>,
    /// Context lengths at which to measure decoding (`none` for no decoding run).
    #[arg(long, value_delimiter = ',', default_value = "512", value_parser = parse_len_or_none)]
    pub decode: Vec<Option<usize>>,
    /// Tokens generated per decode measurement.
    #[arg(long, default_value_t = 16)]
    pub decode_tokens: usize,
    /// What to compare: full (this project's full-attention decoder), focus (FocusLLM,
    /// exact decoding), focus-cw (FocusLLM decoding with the cached window; decode only).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "full,focus")]
    pub modes: Vec<BenchMode>,
    /// Also measure the document memory: at each FocusLLM prefill length, a document read
    /// with a fresh memory, then another question about it (a different ending, 37 tokens
    /// longer) read with the memory the first left.
    #[arg(long)]
    pub memory: bool,
    /// With --memory: keep the first question's chunks in this folder as well (emptied
    /// first), and read the second question as a restarted process would, with nothing in
    /// RAM and the folder as it is (docs/serving.md).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Skip full attention above this many tokens (it is quadratic).
    #[arg(long, default_value = "32k", value_parser = parse_len)]
    pub full_max: usize,
    /// Runs per measurement. With more than one, the first run (which compiles kernels and
    /// autotunes on GPU backends) is reported apart and the rest give the median time (and
    /// the best, in the JSON).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Chunk batch sizes to measure FocusLLM with, e.g. 1,64 to compare chunk-by-chunk
    /// with batched decoding of the memory (default: --batch).
    #[arg(long, value_delimiter = ',')]
    pub batches: Vec<usize>,
    /// The device's ceilings as `TFLOPS,GB/s` (operations and memory bandwidth, e.g.
    /// `494.7,4300` for an H200 in tf32): each prefill and plain decoding row then reports
    /// the share of its roofline time it reaches (the least arithmetic and traffic the work
    /// needs, `focus_model::cost`, at those rates, over the measured time).
    #[arg(long, value_parser = parse_roofline)]
    pub roofline: Option<Roofline>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Resets the peak resident-set size of this process (Linux), so that a later
/// [`peak_rss_mb`] measures from now.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn sync(device: &Device) {
    let _ = device.sync();
}

struct Bench<'a> {
    model: &'a LlamaForCausalLM,
    device: Device,
    focus: FocusConfig,
    rng: StdRng,
}

impl Bench<'_> {
    fn ids(&mut self, len: usize) -> Vec<u32> {
        let cfg = self.model.config();
        let v = cfg.vocab_size as u32;
        let mut ids = vec![cfg.bos_token_id];
        ids.extend((1..len).map(|_| self.rng.random_range(32..v.max(33))));
        ids
    }

    fn reading(&self, mode: BenchMode, batch: Option<usize>) -> Reading {
        let mut cfg = self
            .focus
            .with_max_batch(batch.unwrap_or(self.focus.max_batch));
        if mode == BenchMode::FocusCw {
            cfg.decode = Decode::CachedWindow;
        }
        match mode {
            BenchMode::Full => Reading::Full,
            _ => Reading::Focus(cfg),
        }
    }

    /// One FocusLLM prefill of `ids` with `memory`; returns seconds.
    fn prefill_with(
        &self,
        ids: &[u32],
        batch: Option<usize>,
        memory: &mut ChunkMemory<Vec<LayerKv>>,
    ) -> f64 {
        let cfg = self
            .focus
            .with_max_batch(batch.unwrap_or(self.focus.max_batch));
        let bos = self.model.config().bos_token_id;
        let t = Instant::now();
        let (_, logits) =
            Session::prefill_with_memory(self.model, &cfg, bos, ids, &[], memory, |_, _| {})
                .expect("valid settings");
        let _ = logits.into_data();
        sync(&self.device);
        t.elapsed().as_secs_f64()
    }

    /// A document of `len` tokens with a question at its end (its last 64 tokens), read
    /// with a fresh document memory; then the same document with another question, 37
    /// tokens longer, read with the memory the first left, or with `store` (emptied before
    /// the first) a memory whose RAM is empty and whose folder the first filled. Returns
    /// both times.
    fn two_questions(
        &mut self,
        len: usize,
        batch: Option<usize>,
        store: Option<&DiskStore>,
    ) -> Result<(f64, f64)> {
        let first = self.ids(len);
        let doc = &first[..len.saturating_sub(64)];
        let v = self.model.config().vocab_size as u32;
        let second: Vec<u32> = doc
            .iter()
            .copied()
            .chain((0..101).map(|_| self.rng.random_range(32..v.max(33))))
            .collect();
        let mut memory = ChunkMemory::new(usize::MAX);
        if let Some(store) = store {
            DiskStore::clear(store.dir())?;
            memory = memory.with_store(store.reopen()?);
        }
        let a = self.prefill_with(&first, batch, &mut memory);
        if let Some(store) = store {
            memory = ChunkMemory::new(usize::MAX).with_store(store.reopen()?);
        }
        let b = self.prefill_with(&second, batch, &mut memory);
        Ok((a, b))
    }

    /// Prefill `len` tokens; returns seconds.
    fn prefill(&mut self, mode: BenchMode, len: usize, batch: Option<usize>) -> f64 {
        let ids = self.ids(len);
        let reading = self.reading(mode, batch);
        let bos = self.model.config().bos_token_id;
        let t = Instant::now();
        let (_, logits) =
            Session::read(self.model, reading, bos, &ids, |_, _| {}).expect("valid settings");
        let _ = logits.into_data();
        sync(&self.device);
        t.elapsed().as_secs_f64()
    }

    /// Prefill `len` tokens, then time `n` greedy steps of the generation loop users run
    /// (each step's logits row is read back to the host and sampled there); returns seconds
    /// for the steps.
    fn decode(&mut self, mode: BenchMode, len: usize, batch: Option<usize>, n: usize) -> f64 {
        let ids = self.ids(len);
        let reading = self.reading(mode, batch);
        let bos = self.model.config().bos_token_id;
        let (mut s, logits) =
            Session::read(self.model, reading, bos, &ids, |_, _| {}).expect("valid settings");
        let first = self.model.logits_row(logits);
        let t = Instant::now();
        // n + 1 tokens: every one but the last is fed back, n steps.
        s.generate(first, &mut Sampler::Greedy, n + 1, &[], |_| true);
        sync(&self.device);
        t.elapsed().as_secs_f64()
    }
}

pub fn run(args: Args, quiet: bool) -> Result<()> {
    if let Some(p) = &args.json {
        crate::output::check_writable(p)?;
    }
    let max_pos = usize::MAX / 4;
    let mut focus = args.focus.shape(max_pos)?;
    let prefill = args.prefill.clone();
    let decode: Vec<usize> = args.decode.iter().flatten().copied().collect();
    let full_max = args.full_max;
    let batches = if args.batches.is_empty() {
        vec![focus.max_batch]
    } else {
        args.batches.clone()
    };
    if batches.contains(&0) {
        bail!("--batches: a batch holds at least one chunk");
    }
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if args.store.memory_dir.is_some() && !args.memory {
        bail!("--memory-dir measures the document memory: add --memory");
    }
    if args.store.memory_dir.is_some() && args.random.is_some() {
        bail!("--memory-dir needs --model: random weights have no file to key entries by");
    }
    // Settings are checked above, before a model is loaded.
    let (model, device, name) = match &args.random {
        Some(shape) => {
            let cfg = match shape.as_str() {
                "smollm2-135m" => LlamaConfig::smollm2_135m(),
                "llama-1b" => LlamaConfig::llama_1b(),
                other => bail!("unknown --random shape {other:?} (smollm2-135m, llama-1b)"),
            };
            let mut device = args.model.device.device()?;
            crate::device::set_dtype(&mut device, args.model.dtype)?;
            let model = cfg.init(&device).with_candidate_projections();
            let model = match args.model.chunk_cache_dtype {
                Some(d) => model.with_chunk_cache_dtype(d.burn()),
                None => model,
            };
            (model, device, format!("random {shape}"))
        }
        None => {
            let (loaded, device) = load_model(&args.model, true)?;
            (loaded.model, device, args.model.model.display().to_string())
        }
    };
    focus.prompt = args.focus.prompt.config(model.config())?;
    let bytes_per_value = model.chunk_cache_dtype().size();
    // Weights and the window's keys and values are in the computation's float type.
    let size = args.model.dtype.burn().size();
    let widths = Widths {
        weights: size,
        kv: size,
    };
    let mut bench = Bench {
        model: &model,
        device: device.clone(),
        focus,
        rng: StdRng::seed_from_u64(0),
    };
    // Warm-up: kernels, allocators, autotuning.
    bench.prefill(BenchMode::Full, 64, None);
    let mut plan: Vec<(BenchMode, Phase, usize, Option<usize>)> = Vec::new();
    for &mode in &args.modes {
        let mode_batches: Vec<Option<usize>> = match mode {
            BenchMode::Full => vec![None],
            _ => batches.iter().map(|&b| Some(b)).collect(),
        };
        for (phase, lens) in [(Phase::Prefill, &prefill), (Phase::Decode, &decode)] {
            for &len in lens {
                for &b in &mode_batches {
                    plan.push((mode, phase, len, b));
                }
            }
        }
    }
    plan.retain(|&(m, phase, len, _)| {
        (m != BenchMode::Full || len <= full_max)
            && (m != BenchMode::FocusCw || phase == Phase::Decode)
    });
    if args.memory {
        for &len in &prefill {
            for &b in &batches {
                plan.push((BenchMode::Focus, Phase::Memory, len, Some(b)));
            }
        }
    }
    // Opened once (its fingerprint hashes the model's file); each run opens it again.
    let store = load::open_store(&args.store, &args.model, &device)?;
    let bar = progress_bar(quiet, "runs");
    bar.set_length(plan.len() as u64);
    let mut rows = Vec::new();
    let mut memory_ratios = Vec::new();
    for (mode, phase, len, batch) in plan {
        bar.set_message(format!("{mode} {phase} {len}"));
        reset_peak_rss();
        let mut times = Vec::new();
        let mut firsts = Vec::new();
        for _ in 0..args.repeat {
            times.push(match phase {
                Phase::Prefill => bench.prefill(mode, len, batch),
                Phase::Memory => {
                    let (first, second) = bench.two_questions(len, batch, store.as_ref())?;
                    firsts.push(first);
                    second
                }
                Phase::Decode => bench.decode(mode, len, batch, args.decode_tokens),
            });
        }
        if phase == Phase::Memory {
            // Each run is its own first and second question; the ratio of medians.
            memory_ratios.push(Ratio {
                what: if store.is_some() {
                    "document memory: second question after a restart vs first"
                } else {
                    "document memory: second question vs first"
                }
                .into(),
                phase: Phase::Prefill,
                context: len,
                speedup: median(&firsts) / median(&times),
            });
        }
        let tokens = if phase == Phase::Decode {
            args.decode_tokens
        } else {
            len
        };
        let warm = if times.len() > 1 {
            &times[1..]
        } else {
            &times[..]
        };
        let seconds = median(warm);
        let best_seconds = warm.iter().copied().fold(f64::INFINITY, f64::min);
        let cache = if mode != BenchMode::Full {
            model
                .config()
                .chunk_cache_bytes(&focus, len, bytes_per_value)
        } else {
            0
        };
        let cfg = model.config();
        let cost = match (mode, phase) {
            (BenchMode::Full, Phase::Prefill) => Some(cfg.pass_cost(1, len, 0, 1, widths)),
            (BenchMode::Focus, Phase::Prefill) => Some(cfg.focus_prefill_cost(
                &focus.with_max_batch(batch.unwrap_or(focus.max_batch)),
                len,
                widths,
            )?),
            (BenchMode::Full, Phase::Decode) => {
                Some(cfg.decode_cost(len, args.decode_tokens, widths))
            }
            _ => None,
        };
        rows.push(Row {
            mode,
            batch,
            phase,
            context: len,
            tokens,
            seconds,
            best_seconds,
            run_seconds: times.clone(),
            tokens_per_s: tokens as f64 / seconds,
            first_seconds: times[0],
            runs: args.repeat,
            peak_memory_mb: peak_rss_mb(),
            device_memory_mb: device
                .memory_pool_usage()
                .map(|u| u.bytes_reserved as f64 / 1048576.0),
            chunk_cache_mb: cache as f64 / 1048576.0,
            gflop: cost.map(|c| c.flops / 1e9),
            gbyte: cost.map(|c| c.bytes / 1e9),
            roofline_share: cost
                .zip(args.roofline)
                .map(|(c, r)| c.floor_seconds(r.tflops, r.gbps) / seconds),
        });
        if let Some(r) = rows.last() {
            bar.suspend(|| eprintln!("row {}", serde_json::to_string(r).unwrap_or_default()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "model: {name}; device: {}; dtype: {}; W = {}, S = {}",
        args.model.device,
        args.model.dtype.name(),
        focus.local_window,
        focus.chunk_len
    );
    print_table(&rows);
    let mut ratios = ratios(&rows);
    ratios.extend(memory_ratios);
    for r in &ratios {
        println!(
            "{} {} at {} tokens: {:.2}x",
            r.what, r.phase, r.context, r.speedup
        );
    }
    if let Some(path) = &args.json {
        let out = Output {
            model: name,
            device: args.model.device.to_string(),
            dtype: args.model.dtype.name().to_string(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            local_window: focus.local_window,
            chunk: focus.chunk_len,
            roofline: args.roofline,
            rows: &rows,
            ratios: &ratios,
        };
        write_atomic(path, serde_json::to_string_pretty(&out)?.as_bytes())?;
    }
    Ok(())
}

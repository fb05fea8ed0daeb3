//! What `focus bench` reports: its rows, the ratios between them, the table and the JSON.

use serde::Serialize;

/// A device's ceilings (`--roofline`).
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Roofline {
    pub tflops: f64,
    pub gbps: f64,
}

pub(super) fn parse_roofline(s: &str) -> std::result::Result<Roofline, String> {
    let bad = || format!("{s:?} is not TFLOPS,GB/s (two positive numbers, e.g. 494.7,4300)");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let (tflops, gbps): (f64, f64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if !(tflops > 0.0 && gbps > 0.0 && tflops.is_finite() && gbps.is_finite()) {
        return Err(bad());
    }
    Ok(Roofline { tflops, gbps })
}

/// `--modes`: what a measurement runs.
#[derive(clap::ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMode {
    Full,
    Focus,
    FocusCw,
}

impl std::fmt::Display for BenchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Full => "full",
            Self::Focus => "focus",
            Self::FocusCw => "focus-cw",
        })
    }
}

/// What a measurement times.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Reading an input.
    Prefill,
    /// Generating tokens after it.
    Decode,
    /// A second question about the same document, read with the document memory the first
    /// left.
    Memory,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Prefill => "prefill",
            Self::Decode => "decode",
            Self::Memory => "memory",
        })
    }
}

/// One measurement.
#[derive(Serialize, Debug, Clone)]
pub struct Row {
    pub mode: BenchMode,
    /// Chunks per batched pass (FocusLLM only).
    pub batch: Option<usize>,
    /// For `memory`, its ratio to the first question is listed among the ratios.
    pub phase: Phase,
    pub context: usize,
    pub tokens: usize,
    /// Median time of the runs after the first (the only run when `runs` is 1; with an even
    /// count, the upper of the two middle times).
    pub seconds: f64,
    /// Best time of the same runs.
    pub best_seconds: f64,
    /// Every run's time, the first included.
    pub run_seconds: Vec<f64>,
    pub tokens_per_s: f64,
    /// Time of the first run, which includes kernel compilation and autotuning on GPUs.
    pub first_seconds: f64,
    pub runs: u32,
    /// Peak resident memory of the process during the run (host memory; the CPU backend's
    /// tensors live there).
    pub peak_memory_mb: Option<f64>,
    /// Device memory reserved by burn's pools after the run (GPU backends).
    pub device_memory_mb: Option<f64>,
    pub chunk_cache_mb: f64,
    /// The least arithmetic (10⁹ operations) and memory traffic (10⁹ bytes) the measured work
    /// needs (`focus_model::cost`; prefill and plain decoding only).
    pub gflop: Option<f64>,
    pub gbyte: Option<f64>,
    /// With `--roofline`: the roofline time of that work over the measured time.
    pub roofline_share: Option<f64>,
}

#[derive(Serialize)]
/// The JSON `--json` writes.
pub(super) struct Output<'a> {
    pub(super) model: String,
    pub(super) device: String,
    pub(super) dtype: String,
    pub(super) threads: usize,
    pub(super) local_window: usize,
    pub(super) chunk: usize,
    pub(super) roofline: Option<Roofline>,
    pub(super) rows: &'a [Row],
    pub(super) ratios: &'a [Ratio],
}

/// A speed ratio between two rows of the same phase and context.
#[derive(Serialize, Debug)]
pub struct Ratio {
    pub what: String,
    pub phase: Phase,
    pub context: usize,
    /// How many times faster the first named configuration is.
    pub speedup: f64,
}

pub(super) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(super) fn print_table(rows: &[Row]) {
    println!(
        "| mode  | batch | phase   | context | tokens | seconds | tokens/s | first run s | peak RSS MB | device MB | chunk caches MB | roofline |"
    );
    println!(
        "|-------|------:|---------|--------:|-------:|--------:|---------:|------------:|------------:|----------:|----------------:|---------:|"
    );
    let opt = |v: Option<f64>| v.map_or("-".into(), |m| format!("{m:.0}"));
    for r in rows {
        println!(
            "| {:5} | {:>5} | {:7} | {:>7} | {:>6} | {:>7.2} | {:>8.1} | {:>11.2} | {:>11} | {:>9} | {:>15.0} | {:>8} |",
            r.mode,
            r.batch.map_or("-".into(), |b| b.to_string()),
            r.phase,
            r.context,
            r.tokens,
            r.seconds,
            r.tokens_per_s,
            r.first_seconds,
            opt(r.peak_memory_mb),
            opt(r.device_memory_mb),
            r.chunk_cache_mb,
            r.roofline_share
                .map_or("-".into(), |s| format!("{:.1} %", 100.0 * s))
        );
    }
}

/// Per phase and context: the largest FocusLLM batch against chunk by chunk (batch 1), and
/// FocusLLM (largest batch) against full attention.
pub(super) fn ratios(rows: &[Row]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let mut keys: Vec<(Phase, usize)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.phase, r.context)) {
            keys.push((r.phase, r.context));
        }
    }
    for (phase, context) in keys {
        let same = |r: &&Row| r.phase == phase && r.context == context;
        let focus: Vec<&Row> = rows
            .iter()
            .filter(same)
            .filter(|r| r.mode == BenchMode::Focus)
            .collect();
        let widest = focus.iter().max_by_key(|r| r.batch);
        let one = focus.iter().find(|r| r.batch == Some(1));
        if let (Some(w), Some(o)) = (widest, one)
            && w.batch != Some(1)
        {
            out.push(Ratio {
                what: format!("FocusLLM batch {} vs chunk by chunk", w.batch.unwrap_or(0)),
                phase,
                context,
                speedup: o.seconds / w.seconds,
            });
        }
        let cached = rows
            .iter()
            .filter(same)
            .find(|r| r.mode == BenchMode::FocusCw);
        if let (Some(w), Some(c)) = (widest, cached) {
            out.push(Ratio {
                what: "FocusLLM cached-window vs exact decoding".into(),
                phase,
                context,
                speedup: w.seconds / c.seconds,
            });
        }
        let full = rows.iter().filter(same).find(|r| r.mode == BenchMode::Full);
        if let (Some(w), Some(f)) = (widest, full) {
            out.push(Ratio {
                what: "FocusLLM vs full attention".into(),
                phase,
                context,
                speedup: f.seconds / w.seconds,
            });
        }
    }
    out
}

//! `focus plot-log`: a training run's loss curves as a PNG.

use std::path::PathBuf;

use anyhow::Result;
use focus_train::LineKind;
use plotters::style::RGBColor;

use crate::plot::{Series, lines};

/// Draw a training run's loss curves.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run folder (holding log.jsonl).
    pub run: PathBuf,
    /// Output PNG [default: RUN/loss.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Moving-average window over training steps.
    #[arg(long, default_value_t = 10)]
    pub smooth: usize,
}

/// Draws the training loss (moving average) and the held-out losses of a run.
pub fn run(args: Args) -> Result<()> {
    let log = args.run.join("log.jsonl");
    let text = crate::load::read_text(&log)?;
    let mut train = Vec::new();
    let mut eval = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, l) in text.lines().enumerate() {
        let line: focus_train::checkpoint::LogLine = serde_json::from_str(l)
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", log.display(), i + 1))?;
        let x = line.step as f64;
        if line.kind == LineKind::Train {
            train.push((x, line.loss));
        } else {
            eval.0.push((x, line.loss));
            eval.1.extend(line.continuation.map(|v| (x, v)));
            eval.2.extend(line.repetition.map(|v| (x, v)));
            eval.3.extend(line.window.map(|v| (x, v)));
        }
    }
    let k = args.smooth.max(1);
    let smoothed: Vec<(f64, f64)> = (0..train.len())
        .map(|i| {
            let lo = (i + 1).saturating_sub(k);
            let w = &train[lo..=i];
            (
                train[i].0,
                w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64,
            )
        })
        .collect();
    let series = vec![
        Series {
            name: format!("train (mean of {k} steps)"),
            points: smoothed,
            color: RGBColor(120, 120, 120),
        },
        Series {
            name: "held-out".into(),
            points: eval.0,
            color: RGBColor(200, 40, 40),
        },
        Series {
            name: "held-out continuation".into(),
            points: eval.1,
            color: RGBColor(40, 90, 200),
        },
        Series {
            name: "held-out repetition".into(),
            points: eval.2,
            color: RGBColor(30, 150, 60),
        },
        Series {
            name: "held-out continuation, window alone".into(),
            points: eval.3,
            color: RGBColor(120, 170, 240),
        },
    ];
    // Logs written before a series existed leave it out of the legend.
    let series: Vec<Series> = series
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect();
    let out = args.out.unwrap_or_else(|| args.run.join("loss.png"));
    lines(
        &out,
        "FocusLLM candidate training",
        "step",
        "loss (nats)",
        &series,
    )?;
    Ok(())
}

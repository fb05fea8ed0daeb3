//! PNG charts drawn with plotters: accuracy heatmaps (`passkey`, `niah`) and line charts
//! (`plot-log`).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One panel: `values[column][row]` in 0..=1, `None` where nothing was measured.
pub struct Panel {
    pub title: String,
    pub values: Vec<Vec<Option<f64>>>,
}

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a TrueType font for labels: `FOCUS_FONT`, else a common system font.
/// Returns false when none is found (the heatmap is then drawn without text).
fn register_font() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let env = std::env::var("FOCUS_FONT").ok();
        let candidates = env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS.iter().copied());
        for p in candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!(
            "no TrueType font found (set FOCUS_FONT); drawing the heatmap without labels"
        );
        false
    })
}

fn color(v: f64) -> RGBColor {
    // Red (0) through yellow (0.5) to green (1).
    let v = v.clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 {
        (220.0, 60.0 + 330.0 * v)
    } else {
        (220.0 - 340.0 * (v - 0.5), 225.0 - 40.0 * (v - 0.5))
    };
    RGBColor(r as u8, g as u8, 70)
}

/// Draws the panels side by side into `path` (written to a temporary file, then renamed).
pub fn draw(
    path: &Path,
    title: &str,
    cols: &[String],
    rows: &[String],
    panels: &[Panel],
) -> Result<()> {
    let text = register_font();
    let cell = (64i32, 40i32);
    let (margin_l, margin_t, gap) = (70i32, 60i32, 30i32);
    let panel_w = cell.0 * cols.len() as i32;
    let width = margin_l + (panel_w + gap) * panels.len() as i32 + 10;
    let height = margin_t + cell.1 * rows.len() as i32 + 50;
    let tmp = crate::output::temp_beside(path, ".png")?;
    {
        let root =
            BitMapBackend::new(tmp.path(), (width as u32, height as u32)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the heatmap: {e}");
        root.fill(&WHITE).map_err(err)?;
        let font = |size: i32| ("sans-serif", size).into_font().color(&BLACK);
        if text {
            root.draw(&Text::new(title.to_string(), (margin_l, 8), font(18)))
                .map_err(err)?;
            root.draw(&Text::new("depth", (6, margin_t - 20), font(13)))
                .map_err(err)?;
            for (r, label) in rows.iter().enumerate() {
                let y = margin_t + cell.1 * r as i32 + cell.1 / 2 - 7;
                root.draw(&Text::new(label.clone(), (16, y), font(13)))
                    .map_err(err)?;
            }
        }
        for (p, panel) in panels.iter().enumerate() {
            let x0 = margin_l + (panel_w + gap) * p as i32;
            if text {
                root.draw(&Text::new(
                    panel.title.clone(),
                    (x0, margin_t - 24),
                    font(15),
                ))
                .map_err(err)?;
            }
            for (c, column) in panel.values.iter().enumerate() {
                let x = x0 + cell.0 * c as i32;
                for (r, v) in column.iter().enumerate() {
                    let y = margin_t + cell.1 * r as i32;
                    let fill = v.map_or(RGBColor(200, 200, 200), color);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell.0 - 2, y + cell.1 - 2)],
                        fill.filled(),
                    ))
                    .map_err(err)?;
                    if text {
                        let label = v.map_or("n/a".to_string(), |a| format!("{:.0}%", a * 100.0));
                        root.draw(&Text::new(label, (x + 14, y + cell.1 / 2 - 8), font(13)))
                            .map_err(err)?;
                    }
                }
                if text {
                    let y = margin_t + cell.1 * rows.len() as i32 + 6;
                    root.draw(&Text::new(cols[c].clone(), (x + 18, y), font(13)))
                        .map_err(err)?;
                }
            }
        }
        if text {
            let y = margin_t + cell.1 * rows.len() as i32 + 26;
            root.draw(&Text::new("length (tokens)", (margin_l, y), font(13)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// One line of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

/// Draws `series` as lines (x: step, y: value) into `path`, atomically.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    let text = register_font();
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        anyhow::bail!("nothing to plot");
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let tmp = crate::output::temp_beside(path, ".png")?;
    {
        let root = BitMapBackend::new(tmp.path(), (800, 480)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the chart: {e}");
        root.fill(&WHITE).map_err(err)?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(12);
        if text {
            builder
                .caption(title, ("sans-serif", 20))
                .x_label_area_size(36)
                .y_label_area_size(56);
        }
        let mut chart = builder
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        if text {
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(err)?;
        }
        for s in series {
            let color = s.color;
            if s.points.len() < 40 {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?;
            }
            let drawn = chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            if text {
                drawn.label(s.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

//! Options shared by the evaluation subcommands (`ppl`, `passkey`, `niah`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use focus_core::{FocusConfig, Reading};

/// Which ways of reading the input to compare, and where results go.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// What to compare: `focus` (FocusLLM memory), `truncated` (the local window only)
    /// and `full` (plain full attention; skipped where the input exceeds the model's
    /// context).
    #[arg(long, value_delimiter = ',', default_value = "focus,truncated,full")]
    pub modes: Vec<String>,
    /// `text` prints a table; `json` prints one JSON object instead.
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::common::Format,
    /// Also write the JSON results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl EvalArgs {
    /// The modes, checked, for FocusLLM settings `cfg`.
    pub fn modes(&self, cfg: &FocusConfig) -> Result<Vec<Reading>> {
        let mut out = Vec::new();
        for m in &self.modes {
            let mode = match m.trim() {
                "focus" => Reading::Focus(*cfg),
                "truncated" => Reading::Truncated(cfg.local_window),
                "full" => Reading::Full,
                other => bail!("unknown mode {other:?} (focus, truncated, full)"),
            };
            if !out.contains(&mode) {
                out.push(mode);
            }
        }
        if out.is_empty() {
            bail!("--modes is empty");
        }
        Ok(out)
    }
}

/// Parses a list of lengths such as `4k,8k`.
pub fn lengths(items: &[String]) -> Result<Vec<usize>> {
    let v = items
        .iter()
        .map(|s| crate::common::parse_len(s))
        .collect::<Result<Vec<_>>>()?;
    if v.is_empty() {
        bail!("no lengths given");
    }
    Ok(v)
}

/// Short form of a token count: `512`, `2K`, `32K`.
pub fn short_len(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}K", n / 1024)
    } else {
        n.to_string()
    }
}

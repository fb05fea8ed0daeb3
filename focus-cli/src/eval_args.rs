//! Options shared by the evaluation subcommands (`ppl`, `passkey`, `niah`).

use std::path::PathBuf;

use focus_core::{FocusConfig, Reading};

/// Which ways of reading the input to compare, and where results go.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// What to compare: `focus` (FocusLLM memory), `truncated` (the local window only)
    /// and `full` (plain full attention; skipped where the input exceeds the model's
    /// context).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "focus,truncated,full"
    )]
    pub modes: Vec<Mode>,
    /// `text` prints a table; `json` prints one JSON object instead.
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::args::Format,
    /// Also write the JSON results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `--modes`: one way of reading the input.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Focus,
    Truncated,
    Full,
}

impl EvalArgs {
    /// The modes, each once, in the order given, for FocusLLM settings `cfg`.
    pub fn modes(&self, cfg: &FocusConfig) -> Vec<Reading> {
        let mut out = Vec::new();
        for m in &self.modes {
            let mode = match m {
                Mode::Focus => Reading::Focus(*cfg),
                Mode::Truncated => Reading::Truncated(cfg.local_window),
                Mode::Full => Reading::Full,
            };
            if !out.contains(&mode) {
                out.push(mode);
            }
        }
        out
    }
}

/// Short form of a token count: `512`, `2K`, `32K`.
pub fn short_len(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}K", n / 1024)
    } else {
        n.to_string()
    }
}

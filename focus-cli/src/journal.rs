//! `--journal`: every finished trial of a retrieval test appended to a file, so that a long
//! evaluation stopped partway (a killed process, a machine needed for other work) goes on
//! where it stopped instead of starting over.
//!
//! The file is JSON lines: first the settings' fingerprint, then one trial per line, each
//! written whole and flushed to disk before the next trial starts. A last line cut short by a
//! kill is dropped when the journal is opened again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use focus_eval::retrieval::{KeyRef, Trial};
use serde::{Deserialize, Serialize};

const KIND: &str = "focus trial journal 1";

#[derive(Serialize, Deserialize)]
struct Header {
    journal: String,
    /// SHA-256 of everything a trial's outcome depends on besides its place in the grid.
    settings: String,
}

/// An open journal: the trials it held, and the file new ones are appended to.
pub struct Journal {
    path: PathBuf,
    file: File,
    done: Vec<Trial>,
}

impl Journal {
    /// Opens `path` for the settings `fingerprint`: a new file begins with it; an existing
    /// one must hold the same (else a clear error) and gives back its trials.
    pub fn open(path: &Path, fingerprint: &str) -> Result<Self> {
        let what = || format!("--journal {}", path.display());
        let mut done = Vec::new();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(what),
        };
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            let mut kept = 0;
            for (n, line) in text.split_inclusive('\n').enumerate() {
                if !line.ends_with('\n') {
                    // Cut short by a kill while it was written: run that trial again.
                    break;
                }
                if n == 0 {
                    let header: Header = serde_json::from_str(line)
                        .ok()
                        .filter(|h: &Header| h.journal == KIND)
                        .with_context(|| format!("{}: not a trial journal", what()))?;
                    if header.settings != fingerprint {
                        bail!(
                            "{}: written by a run with other settings (model, candidate \
                             weights, haystack, template or FocusLLM settings); remove it or \
                             name another file",
                            what()
                        );
                    }
                } else {
                    let t: Trial = serde_json::from_str(line)
                        .with_context(|| format!("{}: line {} is not a trial", what(), n + 1))?;
                    done.push(t);
                }
                kept += line.len();
            }
            if kept == 0 {
                bail!("{}: not a trial journal", what());
            }
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(what)?;
            file.set_len(kept as u64).with_context(what)?;
            return Ok(Self {
                path: path.to_path_buf(),
                file,
                done,
            });
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(what)?;
        let header = Header {
            journal: KIND.into(),
            settings: fingerprint.into(),
        };
        writeln!(file, "{}", serde_json::to_string(&header)?).with_context(what)?;
        file.sync_data().with_context(what)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            done,
        })
    }

    /// Trials the journal held when it was opened.
    pub fn held(&self) -> usize {
        self.done.len()
    }

    /// The journal's trial at this place of the grid, if it holds one.
    pub fn take(&mut self, mode: &str, length: usize, depth: f64, at: KeyRef) -> Option<Trial> {
        let i = self.done.iter().position(|t| {
            t.mode == mode
                && t.length == length
                && t.depth == depth
                && t.split == at.split
                && t.seed == at.seed
                && t.index == at.index
        })?;
        Some(self.done.swap_remove(i))
    }

    /// Appends a finished trial and flushes it to disk.
    pub fn record(&mut self, t: &Trial) -> Result<()> {
        let line = serde_json::to_string(t)? + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("--journal {}", self.path.display()))
    }
}

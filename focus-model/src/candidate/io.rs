//! The candidate weights' files: full projections in the reference key layout, or the
//! low-rank updates `focus train --rank` writes. Loading is strict (every tensor of the
//! set present, nothing else); saving writes beside the target and renames it into place.
//! A file may record the settings its weights were trained with ([`WeightSettings`], in
//! its safetensors metadata).

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};

use crate::error::{Error, Result};
use crate::model::LlamaForCausalLM;
use crate::weights::{apply_safetensors, mismatch};

/// Candidate projections' keys, and the low-rank updates' keys.
const PROJ: &str = r"\.beacon_[qkvo]_proj\.";
const LORA: &str = r"\.beacon_[qkvo]_lora\.";
/// Metadata key of the dynamic prompt's cap the weights were trained with.
const PROMPT_CAP: &str = "focus.prompt_cap";

/// The FocusLLM settings a candidate weights file records in its safetensors metadata
/// (`focus.*` keys): those its weights were trained with, which commands take where the
/// command line gives none. A file without them (the reference's, or an older one) records
/// none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightSettings {
    /// The dynamic prompt's cap (`focus.prompt_cap`).
    pub prompt_cap: Option<usize>,
}

impl WeightSettings {
    /// Reads the settings `path` records (the file is checked as a safetensors file).
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::Safetensors {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let Some(cap) = meta.metadata().as_ref().and_then(|m| m.get(PROMPT_CAP)) else {
            return Ok(Self::default());
        };
        let cap = cap
            .parse::<usize>()
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| bad(format!("{PROMPT_CAP} is {cap:?}, not a positive number")))?;
        Ok(Self {
            prompt_cap: Some(cap),
        })
    }

    /// `store` with these settings in its metadata.
    fn record(&self, mut store: SafetensorsStore) -> SafetensorsStore {
        if let Some(cap) = self.prompt_cap {
            store = store.metadata(PROMPT_CAP, cap.to_string());
        }
        store
    }
}

impl LlamaForCausalLM {
    /// Loads candidate projections from a safetensors file with the reference keys
    /// (`model.layers.{i}.self_attn.beacon_{q,k,v,o}_proj.weight`, `[out, in]`). Every
    /// layer's four projections must be present, and nothing else may be.
    pub fn load_candidate_projections(mut self, path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        self = self.with_candidate_projections();
        let device = self.device();
        let r = apply_safetensors(&mut self, path, &device, true, Some(PROJ))?;
        mismatch(&[r], Some(path), |p| p.contains(".beacon_")).into_result()?;
        Ok(self)
    }

    /// Loads candidate weights from a safetensors file: full candidate projections (see
    /// [`load_candidate_projections`](Self::load_candidate_projections)) or low-rank
    /// updates on top of copies of the base projections (as written by
    /// [`save_low_rank`](Self::save_low_rank)).
    pub fn load_focus_weights(self, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Safetensors {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        let tensors = meta.tensors();
        let rank = tensors
            .iter()
            .find(|(k, _)| k.ends_with("beacon_q_lora.lora_a"))
            .map(|(_, info)| info.shape.get(1).copied().unwrap_or(0));
        let Some(rank) = rank else {
            return self.load_candidate_projections(path);
        };
        let mut model = self.with_low_rank(rank.max(1), 0)?;
        let device = model.device();
        let r = apply_safetensors(&mut model, path, &device, false, Some(LORA))?;
        let mut m = mismatch(&[r], Some(path), |p| p.contains("_lora."));
        if !m.misshaped.is_empty() {
            m.hint = Some("candidate weights for another model?".into());
        }
        m.into_result()?;
        Ok(model.fix_candidate_param_ids())
    }

    /// Saves the candidate projections (only them) in the reference key layout, with
    /// `settings` in the metadata. The file is written next to `path` and renamed into
    /// place, so a failure leaves no partial file.
    pub fn save_candidate_projections(&self, path: &Path, settings: WeightSettings) -> Result<()> {
        if !self.has_candidate_proj() {
            return Err(Error::Input(
                "the model has no candidate projections to save".into(),
            ));
        }
        let store = SafetensorsStore::from_file(path.with_extension("safetensors.tmp"))
            .with_to_adapter(BurnToPyTorchAdapter)
            .with_regex(PROJ)
            .metadata("format", "pt");
        self.save_atomic(path, settings.record(store))
    }

    /// Saves the low-rank updates (`model.layers.{i}.self_attn.beacon_{q,k,v,o}_lora.lora_{a,b}`,
    /// `A`: `[in, rank]`, `B`: `[rank, out]`) to a safetensors file, atomically, with
    /// `settings` in its metadata.
    pub fn save_low_rank(&self, path: &Path, settings: WeightSettings) -> Result<()> {
        if self.low_rank().is_none() {
            return Err(Error::Input(
                "the model has no low-rank updates to save".into(),
            ));
        }
        let store =
            SafetensorsStore::from_file(path.with_extension("safetensors.tmp")).with_regex(LORA);
        self.save_atomic(path, settings.record(store))
    }

    /// Saves through `store` (which writes `path` with a `.safetensors.tmp` extension), then
    /// renames the file into place, so a failure leaves no partial file at `path`.
    fn save_atomic(&self, path: &Path, store: SafetensorsStore) -> Result<()> {
        let tmp = path.with_extension("safetensors.tmp");
        let mut store = store.overwrite(true);
        self.save_into(&mut store).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        usual_permissions(&tmp);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}

/// Gives a file the permissions a newly created file gets (`0o666` less the umask, read from
/// `/proc/self/status`): burn-store writes its files readable by the owner only. Where the
/// umask cannot be read, the file keeps those narrower permissions.
fn usual_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("Umask:"))?;
                u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
            });
        if let Some(umask) = umask {
            let mode = std::fs::Permissions::from_mode(0o666 & !umask);
            let _ = std::fs::set_permissions(path, mode);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

//! FocusLLM on the Llama decoder: candidate projections (`beacon_{q,k,v,o}_proj`), their
//! safetensors I/O, and the [`CondensingModel`] implementation that decodes the chunks in
//! batches.

use std::path::Path;

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use focus_core::CondensingModel;

use crate::error::{Error, Result};
use crate::layers::{LayerKv, LowRank, Rows};
use crate::model::{KvCache, LlamaForCausalLM, ids_tensor};
use crate::rope::apply_tables;
use crate::weights::{apply_errors, apply_safetensors};

/// Candidate keys (before RoPE) and values of a batch of chunks, per layer.
///
/// # Shapes
/// - each: `[chunks, kv_heads, 1, head_dim]`
#[derive(Debug, Clone)]
pub struct Candidates(pub Vec<(Tensor<4>, Tensor<4>)>);

/// A copy of `l` with its own parameter identity.
fn copy_linear(l: &Linear) -> Linear {
    Linear {
        weight: Param::from_tensor(l.weight.val()),
        bias: l.bias.as_ref().map(|b| Param::from_tensor(b.val())),
    }
}

impl LlamaForCausalLM {
    /// Adds candidate projections initialised as copies of the base projections (as the
    /// reference does when a checkpoint has none). Existing ones are kept.
    pub fn with_candidate_projections(mut self) -> Self {
        for layer in &mut self.model.layers {
            let a = &mut layer.self_attn;
            a.beacon_q_proj
                .get_or_insert_with(|| copy_linear(&a.q_proj));
            a.beacon_k_proj
                .get_or_insert_with(|| copy_linear(&a.k_proj));
            a.beacon_v_proj
                .get_or_insert_with(|| copy_linear(&a.v_proj));
            a.beacon_o_proj
                .get_or_insert_with(|| copy_linear(&a.o_proj));
        }
        self
    }

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
        let r = apply_safetensors(
            &mut self,
            path,
            &device,
            true,
            Some(r"\.beacon_[qkvo]_proj\."),
        )?;
        let mut problems: Vec<String> = apply_errors(&r.errors).into_iter().collect();
        let missing: Vec<&str> = r
            .missing
            .iter()
            .map(|m| m.0.as_str())
            .filter(|p| p.contains(".beacon_"))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "missing candidate projections: {} (of {} layers)",
                missing.len(),
                self.model.layers.len()
            ));
        }
        if !r.unused.is_empty() {
            problems.push(format!(
                "tensors the model has no place for: {}",
                r.unused.join(", ")
            ));
        }
        let want = 4 * self.model.layers.len();
        if problems.is_empty() && r.applied.len() != want {
            problems.push(format!(
                "{} candidate projections applied, {want} expected",
                r.applied.len()
            ));
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(Error::Weights(format!(
                "{}: {}",
                path.display(),
                problems.join("; ")
            )))
        }
    }

    /// Saves the candidate projections (only them) in the reference key layout. The file
    /// is written next to `path` and renamed into place, so a failure leaves no partial file.
    pub fn save_candidate_projections(&self, path: &Path) -> Result<()> {
        if !self.has_candidate_proj() {
            return Err(Error::Input(
                "the model has no candidate projections to save".into(),
            ));
        }
        let store = SafetensorsStore::from_file(path.with_extension("safetensors.tmp"))
            .with_to_adapter(BurnToPyTorchAdapter)
            .with_regex(r"\.beacon_[qkvo]_proj\.")
            .metadata("format", "pt");
        self.save_atomic(path, store)
    }
}

/// First parameter id of the candidate projections (see
/// [`LlamaForCausalLM::fix_candidate_param_ids`]).
const CANDIDATE_ID_BASE: u64 = 0xF0C5_0000_0000;

fn with_id(p: &Param<Tensor<2>>, id: u64) -> Param<Tensor<2>> {
    Param::initialized(ParamId::from(id), p.val())
}

impl LlamaForCausalLM {
    /// Adds rank-`rank` updates (`B = 0`, so the model is unchanged) on top of every
    /// candidate projection, `A` drawn from `seed`; they are what training changes in
    /// low-rank mode.
    pub fn with_low_rank(mut self, rank: usize, seed: u64) -> Result<Self> {
        if rank == 0 {
            return Err(Error::Input(
                "the low-rank update needs a rank of at least 1".into(),
            ));
        }
        self = self.with_candidate_projections();
        let device = self.device();
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            let a = &mut layer.self_attn;
            let init = |l: &Option<Linear>, j: u64| {
                let d = l.as_ref().expect("candidate projections").weight.dims();
                let r = rank.min(d[0]).min(d[1]);
                LowRank::new(d[0], d[1], r, seed ^ ((i as u64) << 8 | j), &device)
            };
            a.beacon_q_lora = Some(init(&a.beacon_q_proj, 0));
            a.beacon_k_lora = Some(init(&a.beacon_k_proj, 1));
            a.beacon_v_lora = Some(init(&a.beacon_v_proj, 2));
            a.beacon_o_lora = Some(init(&a.beacon_o_proj, 3));
        }
        Ok(self)
    }

    /// The rank of the low-rank updates, if the model has them.
    pub fn low_rank(&self) -> Option<usize> {
        let l = self
            .model
            .layers
            .first()?
            .self_attn
            .beacon_q_lora
            .as_ref()?;
        Some(l.lora_a.dims()[1])
    }

    /// Folds the low-rank updates into the candidate projections (`W + A·B`) and drops them.
    pub fn merge_low_rank(mut self) -> Self {
        for layer in &mut self.model.layers {
            for (proj, lora) in layer.self_attn.candidate_slots_mut() {
                if let (Some(p), Some(l)) = (proj.as_mut(), lora.take()) {
                    let w = p.weight.val() + l.delta();
                    p.weight = Param::initialized(p.weight.id, w);
                }
            }
        }
        self
    }

    /// Gives the candidate projections (and their low-rank updates) fixed parameter ids,
    /// the same in every run, so that saved optimizer state finds its parameters again.
    pub fn fix_candidate_param_ids(mut self) -> Self {
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            let slots = layer.self_attn.candidate_slots_mut();
            for (j, (proj, lora)) in slots.into_iter().enumerate() {
                let id = CANDIDATE_ID_BASE + ((i * 4 + j) * 4) as u64;
                if let Some(p) = proj.as_mut() {
                    p.weight = with_id(&p.weight, id);
                }
                if let Some(l) = lora.as_mut() {
                    l.lora_a = with_id(&l.lora_a, id + 1);
                    l.lora_b = with_id(&l.lora_b, id + 2);
                }
            }
        }
        self
    }

    /// Saves the low-rank updates (`model.layers.{i}.self_attn.beacon_{q,k,v,o}_lora.lora_{a,b}`,
    /// `A`: `[in, rank]`, `B`: `[rank, out]`) to a safetensors file, atomically.
    pub fn save_low_rank(&self, path: &Path) -> Result<()> {
        if self.low_rank().is_none() {
            return Err(Error::Input(
                "the model has no low-rank updates to save".into(),
            ));
        }
        let store = SafetensorsStore::from_file(path.with_extension("safetensors.tmp"))
            .with_regex(r"\.beacon_[qkvo]_lora\.");
        self.save_atomic(path, store)
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
        match rank {
            None => self.load_candidate_projections(path),
            Some(rank) => {
                let mut model = self.with_low_rank(rank.max(1), 0)?;
                let device = model.device();
                let filter = Some(r"\.beacon_[qkvo]_lora\.");
                let r = apply_safetensors(&mut model, path, &device, false, filter)?;
                let want = 8 * model.model.layers.len();
                if let Some(e) = apply_errors(&r.errors) {
                    return Err(Error::Weights(format!(
                        "{}: {e} (candidate weights for another model?)",
                        path.display()
                    )));
                }
                if !r.unused.is_empty() || r.applied.len() != want {
                    return Err(Error::Weights(format!(
                        "{}: {} of {want} low-rank tensors applied; unused: {}",
                        path.display(),
                        r.applied.len(),
                        r.unused.join(", ")
                    )));
                }
                model = model.fix_candidate_param_ids();
                Ok(model)
            }
        }
    }
}

impl LlamaForCausalLM {
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

fn batch_ids(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let n = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    ids_tensor(&flat, device).reshape([rows.len(), n])
}

impl CondensingModel for LlamaForCausalLM {
    type Cache = KvCache;
    type Candidates = Candidates;
    type Logits = Tensor<2>;

    fn prefill_chunks(&self, rows: &[Vec<u32>]) -> (KvCache, Candidates) {
        let n = rows[0].len();
        let f = self.forward(
            batch_ids(rows, &self.device()),
            0,
            None,
            Rows::LastIsCandidate,
        );
        let mut cache = Vec::with_capacity(f.new_kv.len());
        let mut cands = Vec::with_capacity(f.new_kv.len());
        for kv in f.new_kv {
            cache.push(LayerKv {
                k: kv.k_rot.narrow(2, 0, n - 1),
                v: kv.v.clone().narrow(2, 0, n - 1),
            });
            cands.push((kv.cand_k.expect("candidate rows"), kv.v.narrow(2, n - 1, 1)));
        }
        (cache, Candidates(cands))
    }

    fn step_chunks(&self, cache: &mut KvCache, prev: u32, next: u32) -> Candidates {
        let b = cache[0].k.dims()[0];
        let start = cache[0].len();
        let rows = vec![vec![prev, next]; b];
        let f = self.forward(
            batch_ids(&rows, &self.device()),
            start,
            Some(cache),
            Rows::LastIsCandidate,
        );
        let mut cands = Vec::with_capacity(f.new_kv.len());
        for (c, kv) in cache.iter_mut().zip(f.new_kv) {
            c.append(LayerKv {
                k: kv.k_rot.narrow(2, 0, 1),
                v: kv.v.clone().narrow(2, 0, 1),
            });
            cands.push((kv.cand_k.expect("candidate rows"), kv.v.narrow(2, 1, 1)));
        }
        Candidates(cands)
    }

    fn local_pass(&self, candidates: &[&Candidates], ids: &[u32]) -> Tensor<2> {
        let device = self.device();
        let c: usize = candidates.iter().map(|g| g.0[0].0.dims()[0]).sum();
        let (cos, sin) = self.rope().tables(0, c, &device);
        let past: Vec<LayerKv> = (0..self.model.layers.len())
            .map(|l| {
                let k = Tensor::cat(candidates.iter().map(|g| g.0[l].0.clone()).collect(), 0);
                let v = Tensor::cat(candidates.iter().map(|g| g.0[l].1.clone()).collect(), 0);
                // [C, kv_heads, 1, d] -> [1, kv_heads, C, d]; candidate j sits at position j.
                LayerKv {
                    k: apply_tables(k.swap_dims(0, 2), &cos, &sin),
                    v: v.swap_dims(0, 2),
                }
            })
            .collect();
        let f = self.forward(ids_tensor(ids, &device), c, Some(&past), Rows::Plain);
        self.last_logits(f.hidden)
    }

    fn prefill(&self, ids: &[u32]) -> (Tensor<2>, KvCache) {
        LlamaForCausalLM::prefill(self, ids)
    }

    fn step(&self, cache: &mut KvCache, token: u32) -> Tensor<2> {
        LlamaForCausalLM::step(self, cache, token)
    }

    fn logits_row(&self, logits: Tensor<2>) -> Vec<f32> {
        logits
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("float logits")
    }
}

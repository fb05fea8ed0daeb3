//! FocusLLM on the Llama decoder: candidate projections (`beacon_{q,k,v,o}_proj`), their
//! safetensors I/O, and the [`CondensingModel`] implementation that decodes the chunks in
//! batches.

use std::path::Path;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use focus_core::CondensingModel;

use crate::error::{Error, Result};
use crate::layers::{LayerKv, Rows};
use crate::model::{KvCache, LlamaForCausalLM, ids_tensor};
use crate::rope::apply_tables;

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
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_regex(r"\.beacon_[qkvo]_proj\.")
            .allow_partial(true);
        let r = self.load_from(&mut store).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut problems: Vec<String> = r.errors.iter().map(|e| format!("{e:?}")).collect();
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
        let tmp = path.with_extension("safetensors.tmp");
        let mut store = SafetensorsStore::from_file(&tmp)
            .with_to_adapter(BurnToPyTorchAdapter)
            .with_regex(r"\.beacon_[qkvo]_proj\.")
            .metadata("format", "pt")
            .overwrite(true);
        self.save_into(&mut store).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
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
        LlamaForCausalLM::step(self, token, cache)
    }
}

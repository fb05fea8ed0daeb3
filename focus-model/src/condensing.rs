//! [`CondensingModel`] for the Llama decoder: chunks decoded in batches, their candidates'
//! keys and values handed to the local pass.

use burn::prelude::*;
use burn::tensor::DType;
use focus_core::CondensingModel;

use crate::layers::{LayerKv, Rows};
use crate::model::{KvCache, LlamaForCausalLM, ids_tensor};
use crate::rope::apply_tables;

/// Candidate keys (before RoPE) and values of a batch of chunks, per layer.
///
/// # Shapes
/// - each: `[chunks, kv_heads, 1, head_dim]`
#[derive(Debug, Clone)]
pub struct Candidates(pub Vec<(Tensor<4>, Tensor<4>)>);

fn batch_ids(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let n = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    ids_tensor(&flat, device).reshape([rows.len(), n])
}

impl LlamaForCausalLM {
    /// The candidates of all chunks as one prefix of keys and values (`[1, kv_heads, C, d]`
    /// per layer), candidate `j` rotated to position `j`.
    fn candidate_prefix(&self, candidates: &[&Candidates]) -> Vec<LayerKv> {
        let device = self.device();
        let c: usize = candidates.iter().map(|g| g.0[0].0.dims()[0]).sum();
        let (cos, sin) = self.rope().tables(0, c, &device);
        (0..self.model.layers.len())
            .map(|l| {
                let k = Tensor::cat(candidates.iter().map(|g| g.0[l].0.clone()).collect(), 0);
                let v = Tensor::cat(candidates.iter().map(|g| g.0[l].1.clone()).collect(), 0);
                // [C, kv_heads, 1, d] -> [1, kv_heads, C, d]; candidate j sits at position j.
                LayerKv {
                    k: apply_tables(k.swap_dims(0, 2), &cos, &sin),
                    v: v.swap_dims(0, 2),
                }
            })
            .collect()
    }

    /// The local passes of `k = steps.len()` consecutive decoding steps as one batch (a
    /// training example's targets): step `t` reads the first `ids.len() − k + 1 + t` tokens of
    /// `ids` after its own candidates `steps[t]` (every step the same number), and its last
    /// row's logits are row `t` of the result, `[k, vocab]`. The steps share one input: under
    /// the causal mask a row reads only the tokens up to its own, so step `t`'s row sees
    /// exactly its input, and the `k − 1 − t` rows after it are computed unread.
    pub fn local_passes(&self, steps: &[Vec<&Candidates>], ids: &[u32]) -> Tensor<2> {
        let k = steps.len();
        assert!(
            k > 0 && ids.len() >= k,
            "{k} steps over {} tokens",
            ids.len()
        );
        let prefixes: Vec<Vec<LayerKv>> = steps.iter().map(|c| self.candidate_prefix(c)).collect();
        let mut past: Vec<LayerKv> = (0..self.model.layers.len())
            .map(|l| LayerKv {
                k: Tensor::cat(prefixes.iter().map(|p| p[l].k.clone()).collect(), 0),
                v: Tensor::cat(prefixes.iter().map(|p| p[l].v.clone()).collect(), 0),
            })
            .collect();
        let c = past[0].len();
        let rows = vec![ids.to_vec(); k];
        let f = self.forward_last(
            batch_ids(&rows, &self.device()),
            c,
            Some(&mut past),
            Rows::Plain,
            k,
        );
        // Step t's last row is row t of the last k rows of batch element t.
        let d = self.config().hidden_size;
        let own: Vec<i64> = (0..k).map(|t| (t * k + t) as i64).collect();
        let own = Tensor::<1, Int>::from_data(TensorData::new(own, [k]), &self.device());
        let hidden = f.hidden.reshape([k * k, d]).select(0, own);
        self.logits(hidden.unsqueeze())
            .reshape([k, self.config().vocab_size])
    }
}

impl CondensingModel for LlamaForCausalLM {
    type Cache = KvCache;
    type Candidates = Candidates;
    type Logits = Tensor<2>;
    type ChunkKv = Vec<LayerKv>;

    fn chunk_kv(&self, chunks: &[&[u32]]) -> Vec<Vec<LayerKv>> {
        let rows: Vec<Vec<u32>> = chunks.iter().map(|c| c.to_vec()).collect();
        let new_kv = self.keys_values(batch_ids(&rows, &self.device()), 0, None, Rows::Plain);
        let dtype = self.chunk_cache_dtype();
        let layers: Vec<(Tensor<4>, Tensor<4>)> = new_kv
            .into_iter()
            .map(|kv| (kv.k_rot.cast(dtype), kv.v.cast(dtype)))
            .collect();
        (0..chunks.len())
            .map(|i| {
                layers
                    .iter()
                    .map(|(k, v)| LayerKv {
                        k: k.clone().narrow(0, i, 1),
                        v: v.clone().narrow(0, i, 1),
                    })
                    .collect()
            })
            .collect()
    }

    fn extend_chunk_kv(&self, stored: &Vec<LayerKv>, keep: usize, chunk: &[u32]) -> Vec<LayerKv> {
        let mut kept: Vec<LayerKv> = stored
            .iter()
            .map(|l| LayerKv {
                k: l.k.clone().narrow(2, 0, keep),
                v: l.v.clone().narrow(2, 0, keep),
            })
            .collect();
        if keep == chunk.len() {
            return kept;
        }
        let rest = vec![chunk[keep..].to_vec()];
        // The new rows join the kept ones in their float type: the chunk caches' own.
        self.keys_values(
            batch_ids(&rest, &self.device()),
            keep,
            Some(&mut kept),
            Rows::Plain,
        );
        kept
    }

    fn chunk_kv_bytes(&self, kv: &Vec<LayerKv>) -> usize {
        kv.iter()
            .map(|l| {
                let elem = l.k.dtype().size();
                (l.k.shape().num_elements() + l.v.shape().num_elements()) * elem
            })
            .sum()
    }

    fn encode_chunk_kv(&self, kv: &Vec<LayerKv>) -> Vec<u8> {
        encode_kv(kv)
    }

    fn decode_chunk_kv(&self, bytes: &[u8]) -> Option<Vec<LayerKv>> {
        decode_kv(bytes, &self.device(), self.model.layers.len())
    }

    fn prefill_prompts(&self, chunks: &[&Vec<LayerKv>], prompt: &[u32]) -> (KvCache, Candidates) {
        let n = chunks[0][0].len();
        let m = prompt.len();
        let mut cache: Vec<LayerKv> = (0..self.model.layers.len())
            .map(|l| LayerKv {
                k: Tensor::cat(chunks.iter().map(|c| c[l].k.clone()).collect(), 0),
                v: Tensor::cat(chunks.iter().map(|c| c[l].v.clone()).collect(), 0),
            })
            .collect();
        let rows = vec![prompt.to_vec(); chunks.len()];
        let new_kv = self.keys_values(
            batch_ids(&rows, &self.device()),
            n,
            Some(&mut cache),
            Rows::LastIsCandidate,
        );
        let mut cands = Vec::with_capacity(new_kv.len());
        for (c, kv) in cache.iter_mut().zip(new_kv) {
            // The cache keeps the prompt's rows but the candidate's.
            c.truncate(n + m - 1);
            cands.push((kv.cand_k.expect("candidate rows"), kv.v.narrow(2, m - 1, 1)));
        }
        (cache, Candidates(cands))
    }

    fn step_chunks(&self, cache: &mut KvCache, prev: u32, next: u32) -> Candidates {
        let b = cache[0].k.dims()[0];
        let start = cache[0].len();
        let rows = vec![vec![prev, next]; b];
        let new_kv = self.keys_values(
            batch_ids(&rows, &self.device()),
            start,
            Some(cache),
            Rows::LastIsCandidate,
        );
        let mut cands = Vec::with_capacity(new_kv.len());
        for (c, kv) in cache.iter_mut().zip(new_kv) {
            // The cache keeps the fed token's row, not the candidate's.
            c.truncate(start + 1);
            cands.push((kv.cand_k.expect("candidate rows"), kv.v.narrow(2, 1, 1)));
        }
        Candidates(cands)
    }

    fn local_pass(&self, candidates: &[&Candidates], ids: &[u32]) -> (Tensor<2>, KvCache) {
        let mut past = self.candidate_prefix(candidates);
        let c = past[0].len();
        let f = self.forward_last(
            ids_tensor(ids, &self.device()),
            c,
            Some(&mut past),
            Rows::Plain,
            1,
        );
        let cache = f
            .new_kv
            .into_iter()
            .map(|kv| LayerKv {
                k: kv.k_rot,
                v: kv.v,
            })
            .collect();
        (self.last_logits(f.hidden), cache)
    }

    fn local_step(&self, candidates: &[&Candidates], cache: &mut KvCache, token: u32) -> Tensor<2> {
        let mut past = self.candidate_prefix(candidates);
        let c = past[0].len();
        for (p, w) in past.iter_mut().zip(cache.iter()) {
            p.append(w.clone());
        }
        let start = c + cache[0].len();
        let f = self.forward(
            ids_tensor(&[token], &self.device()),
            start,
            Some(&mut past),
            Rows::Plain,
        );
        Self::extend_cache(cache, f.new_kv);
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

/// A chunk's keys and values as bytes: the float type (1 byte: 0 f32, 1 f16, 2 bf16), the
/// shape shared by every tensor (4 × u32, little endian), then each layer's keys and values
/// in their own float type, little endian.
fn encode_kv(kv: &[LayerKv]) -> Vec<u8> {
    let first = &kv[0].k;
    let tag = match first.dtype() {
        DType::F16 => 1u8,
        DType::BF16 => 2,
        _ => 0,
    };
    let mut out = vec![tag];
    for d in first.dims() {
        out.extend_from_slice(&(d as u32).to_le_bytes());
    }
    for l in kv {
        for t in [&l.k, &l.v] {
            out.extend_from_slice(t.clone().into_data().as_bytes());
        }
    }
    out
}

/// [`encode_kv`]'s bytes back as `layers` layers on `device`, or `None` when they do not
/// hold that many layers of one shape.
fn decode_kv(bytes: &[u8], device: &Device, layers: usize) -> Option<Vec<LayerKv>> {
    let dtype = match *bytes.first()? {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::BF16,
        _ => return None,
    };
    let dims: Vec<usize> = bytes
        .get(1..17)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .collect();
    let shape = [dims[0], dims[1], dims[2], dims[3]];
    let size = shape.iter().product::<usize>().checked_mul(dtype.size())?;
    let body = &bytes[17..];
    if size == 0 || body.len() != 2 * layers * size {
        return None;
    }
    let mut tensors = body.chunks_exact(size).map(|b| {
        let data = TensorData::from_bytes_vec(b.to_vec(), shape, dtype);
        Tensor::<4>::from_data(data, device)
    });
    (0..layers)
        .map(|_| {
            Some(LayerKv {
                k: tensors.next()?,
                v: tensors.next()?,
            })
        })
        .collect()
}

//! The Llama-family decoder (`LlamaForCausalLM`), with a KV cache and the hooks FocusLLM
//! needs: candidate rows, un-rotated keys, and a prefix of keys at chosen positions.

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::DType;
use focus_core::{CondensingModel, Reading, Sampler, Session};

use crate::config::LlamaConfig;
use crate::layers::{DecoderLayer, LayerKv, NewKv, Rows};
use crate::rope::Rope;

/// `model.*`: embeddings, layers, final norm.
#[derive(Module, Debug)]
pub struct LlamaModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

/// The causal language model. `lm_head` is `None` when the embeddings are tied.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM {
    pub model: LlamaModel,
    pub lm_head: Option<Linear>,
    #[module(skip)]
    config: LlamaConfig,
    #[module(skip)]
    rope: Rope,
    /// The float type FocusLLM's chunk caches are kept in (`None`: the computation's).
    #[module(skip)]
    chunk_dtype: Option<DType>,
}

/// Per-layer key/value cache of a sequence (or a batch of equally long sequences).
pub type KvCache = Vec<LayerKv>;

/// The result of one forward call.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Final hidden states after the last norm of the rows read, `[batch, n, hidden]` (the
    /// last `n` of `T`; all of them from [`LlamaForCausalLM::forward`]).
    pub hidden: Tensor<3>,
    /// Per layer, the new rows' keys and values.
    pub new_kv: Vec<NewKv>,
}

impl LlamaConfig {
    /// A model with randomly initialised weights (candidate projections absent).
    pub fn init(&self, device: &Device) -> LlamaForCausalLM {
        let d = self.hidden_size;
        LlamaForCausalLM {
            model: LlamaModel {
                embed_tokens: EmbeddingConfig::new(self.vocab_size, d).init(device),
                layers: (0..self.num_hidden_layers)
                    .map(|_| DecoderLayer::new(self, device))
                    .collect(),
                norm: RmsNormConfig::new(d)
                    .with_epsilon(self.rms_norm_eps)
                    .init(device),
            },
            lm_head: (!self.tie_word_embeddings).then(|| {
                LinearConfig::new(d, self.vocab_size)
                    .with_bias(false)
                    .init(device)
            }),
            config: self.clone(),
            rope: Rope::new(self),
            chunk_dtype: None,
        }
    }
}

impl LlamaForCausalLM {
    /// The resolved configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Keeps FocusLLM's chunk caches (the keys and values of memory chunks and of their
    /// prompt rows, and a document memory's entries) in `dtype`, cast to the computation's
    /// float type where attention reads them: f16 or bf16 halve the memory of an f32
    /// computation, at the accuracy measured in `docs/benchmarks.md`.
    pub fn with_chunk_cache_dtype(mut self, dtype: DType) -> Self {
        self.chunk_dtype = Some(dtype);
        self
    }

    /// The float type of the chunk caches.
    pub fn chunk_cache_dtype(&self) -> DType {
        // The weights are in the computation's float type.
        self.chunk_dtype
            .unwrap_or_else(|| self.model.embed_tokens.weight.val().dtype())
    }

    /// The rotary embedding.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.model.embed_tokens.weight.val().device()
    }

    /// Whether every layer has candidate projections.
    pub fn has_candidate_proj(&self) -> bool {
        self.model
            .layers
            .iter()
            .all(|l| l.self_attn.candidate().is_some())
    }

    /// Runs the decoder on `ids` placed at positions `start..start + T`, after `past`.
    ///
    /// Every row attends to all `past` positions and causally to the rows before it; `past`
    /// then holds the new rows too.
    ///
    /// # Shapes
    /// - ids: `[batch, T]`
    /// - past: per layer `[batch, kv_heads, P, head_dim]` (keys already rotated), then
    ///   `P + T` positions
    /// - output: hidden `[batch, T, hidden]` and per-layer new keys/values
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        start: usize,
        past: Option<&mut [LayerKv]>,
        rows: Rows,
    ) -> Forward {
        let t = ids.dims()[1];
        self.forward_last(ids, start, past, rows, t)
    }

    /// [`forward`](Self::forward) for a caller that reads the final hidden states of the
    /// last `n` rows only (`1 ≤ n ≤ T`; a prefill's last row, the scored rows of a window):
    /// the last layer computes every row's keys and values, but the queries, attention and
    /// MLP of those `n` rows alone.
    ///
    /// # Shapes
    /// - output: hidden `[batch, n, hidden]`, per-layer new keys/values of all `T` rows
    pub fn forward_last(
        &self,
        ids: Tensor<2, Int>,
        start: usize,
        past: Option<&mut [LayerKv]>,
        rows: Rows,
        n: usize,
    ) -> Forward {
        assert!(n > 0, "a forward call returns at least one row");
        let (hidden, new_kv) = self.run(ids, start, past, rows, n);
        Forward {
            hidden: hidden.expect("n > 0 rows"),
            new_kv,
        }
    }

    /// [`forward`](Self::forward) for the keys and values alone (a chunk's, its prompt
    /// rows'): the last layer computes no queries, attention or MLP.
    pub fn keys_values(
        &self,
        ids: Tensor<2, Int>,
        start: usize,
        past: Option<&mut [LayerKv]>,
        rows: Rows,
    ) -> Vec<NewKv> {
        self.run(ids, start, past, rows, 0).1
    }

    /// The decoder on `ids`, every layer on every row but the last, which computes the
    /// output of the last `out` rows only (none when `out` is 0); the final norm of those.
    fn run(
        &self,
        ids: Tensor<2, Int>,
        start: usize,
        mut past: Option<&mut [LayerKv]>,
        rows: Rows,
        out: usize,
    ) -> (Option<Tensor<3>>, Vec<NewKv>) {
        let mut x = self.model.embed_tokens.forward(ids);
        let (cos, sin) = self.rope.tables(start, x.dims()[1], &x.device());
        let (last, body) = self
            .model
            .layers
            .split_last()
            .expect("a decoder has layers (the configuration is checked for it)");
        let mut new_kv = Vec::with_capacity(body.len() + 1);
        for (i, layer) in body.iter().enumerate() {
            let past = past.as_deref_mut().map(|p| &mut p[i]);
            let (y, kv) = layer.forward(x, &cos, &sin, past, rows);
            x = y;
            new_kv.push(kv);
        }
        let past = past.map(|p| &mut p[body.len()]);
        let (y, kv) = last.forward_last(x, &cos, &sin, past, rows, out);
        new_kv.push(kv);
        (y.map(|y| self.model.norm.forward(y)), new_kv)
    }

    /// Logits of hidden states.
    ///
    /// # Shapes
    /// - hidden: `[batch, T, hidden]` -> `[batch, T, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => crate::layers::apply(head, hidden),
            None => crate::layers::times(hidden, self.model.embed_tokens.weight.val().transpose()),
        }
    }

    /// Logits of the last row of each sequence, `[batch, vocab]`.
    pub fn last_logits(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, _] = hidden.dims();
        self.logits(hidden.narrow(1, t - 1, 1))
            .reshape([b, self.config.vocab_size])
    }

    /// Appends the new rows of a forward call to a cache (creating it if empty).
    pub fn extend_cache(cache: &mut KvCache, new_kv: Vec<NewKv>) {
        if cache.is_empty() {
            cache.extend(new_kv.into_iter().map(|n| LayerKv { k: n.k_rot, v: n.v }));
        } else {
            for (c, n) in cache.iter_mut().zip(new_kv) {
                c.append(LayerKv { k: n.k_rot, v: n.v });
            }
        }
    }

    /// Runs a whole prompt and returns the last row's logits `[1, vocab]` and the KV cache.
    pub fn prefill(&self, ids: &[u32]) -> (Tensor<2>, KvCache) {
        let f = self.forward_last(ids_tensor(ids, &self.device()), 0, None, Rows::Plain, 1);
        let logits = self.last_logits(f.hidden);
        let mut cache = KvCache::new();
        Self::extend_cache(&mut cache, f.new_kv);
        (logits, cache)
    }

    /// Feeds one token after `cache` (which grows by one position); returns `[1, vocab]` logits.
    pub fn step(&self, cache: &mut KvCache, token: u32) -> Tensor<2> {
        let start = cache.first().map_or(0, LayerKv::len);
        let f = self.forward(
            ids_tensor(&[token], &self.device()),
            start,
            Some(cache),
            Rows::Plain,
        );
        self.last_logits(f.hidden)
    }

    /// Greedy continuation of exactly `ids` (nothing prepended) by `n` tokens with the KV
    /// cache, through the one generation loop ([`Session::generate`]).
    pub fn generate_greedy(&self, ids: &[u32], n: usize) -> Vec<u32> {
        if ids.is_empty() {
            return Vec::new();
        }
        let bos = self.config().bos_token_id;
        let (mut s, logits) =
            Session::read(self, Reading::Full, bos, ids, |_, _| {}).expect("non-empty input");
        s.generate(
            self.logits_row(logits),
            &mut Sampler::Greedy,
            n,
            &[],
            |_| true,
        )
    }
}

/// A `[1, T]` id tensor.
pub fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(data, [ids.len()]), device).reshape([1, ids.len()])
}

//! The decoder layer: RMSNorm, grouped-query attention with optional candidate
//! projections, SwiGLU MLP. Field paths equal HF checkpoint keys.

use burn::nn::{Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::candidate::low_rank::{CandidateProj, LowRank};
use crate::config::LlamaConfig;
use crate::rope::apply_tables;

/// Keys (already rotated to their positions) and values of earlier tokens, for one layer.
///
/// # Shapes
/// - k, v: `[batch, kv_heads, past_len, head_dim]`
#[derive(Debug, Clone)]
pub struct LayerKv {
    pub k: Tensor<4>,
    pub v: Tensor<4>,
}

impl LayerKv {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.k.dims()[2]
    }

    /// Whether the cache holds no position.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other` along the sequence axis, in this cache's float type (on the CPU
    /// backend in place where the cache has spare rows, [`crate::cpu::kv`]).
    pub fn append(&mut self, other: LayerKv) {
        let dtype = self.k.dtype();
        let (k, v) = (other.k.cast(dtype), other.v.cast(dtype));
        #[cfg(feature = "flex")]
        if crate::cpu::kv::serves(&self.k, &k) {
            // The cache's own tensors, moved out so that nothing else holds their buffers.
            let empty = || Tensor::<4>::empty([0, 0, 0, 0], &k.device());
            let past = std::mem::replace(
                self,
                Self {
                    k: empty(),
                    v: empty(),
                },
            );
            self.k = crate::cpu::kv::append(past.k, k);
            self.v = crate::cpu::kv::append(past.v, v);
            return;
        }
        self.k = Tensor::cat(vec![self.k.clone(), k], 2);
        self.v = Tensor::cat(vec![self.v.clone(), v], 2);
    }

    /// Keeps the first `len` positions (no copy: the rest become spare rows).
    pub fn truncate(&mut self, len: usize) {
        self.k = self.k.clone().narrow(2, 0, len);
        self.v = self.v.clone().narrow(2, 0, len);
    }

    /// The keys and values in `dtype` (no copy when they are in it already).
    pub fn cast(self, dtype: DType) -> Self {
        Self {
            k: self.k.cast(dtype),
            v: self.v.cast(dtype),
        }
    }
}

/// What one attention call produced for its new rows.
///
/// # Shapes
/// - k_rot, v: `[batch, kv_heads, T, head_dim]`
/// - cand_k: `[batch, kv_heads, 1, head_dim]`
#[derive(Debug, Clone)]
pub struct NewKv {
    /// Keys rotated to their positions (what a KV cache stores).
    pub k_rot: Tensor<4>,
    /// Values.
    pub v: Tensor<4>,
    /// The candidate row's key before RoPE, when the last row is a candidate (FocusLLM
    /// re-rotates candidate keys to their prefix positions in the local pass).
    pub cand_k: Option<Tensor<4>>,
}

/// Grouped-query self-attention (`model.layers.N.self_attn`).
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    // The candidate projections and their low-rank updates (crate::candidate owns them):
    // separate fields, because their paths are the reference checkpoint's keys.
    pub beacon_q_proj: Option<Linear>,
    pub beacon_k_proj: Option<Linear>,
    pub beacon_v_proj: Option<Linear>,
    pub beacon_o_proj: Option<Linear>,
    /// Optional trainable low-rank updates of the candidate projections.
    pub beacon_q_lora: Option<LowRank>,
    pub beacon_k_lora: Option<LowRank>,
    pub beacon_v_lora: Option<LowRank>,
    pub beacon_o_lora: Option<LowRank>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// How the rows of one forward call are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Every row uses the base projections.
    Plain,
    /// The last row is a FocusLLM candidate: candidate projections in every layer.
    LastIsCandidate,
}

fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).with_bias(false).init(device)
}

/// `x · w` for `w` `[in, out]`: in f32 on the CPU backend through [`crate::cpu::gemv`]
/// (a few rows: decoding) or [`crate::cpu::gemm`] (more), burn's product otherwise.
pub(crate) fn times<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if crate::cpu::applies(&x)
        && let Some(y) =
            crate::cpu::gemv::product(&x, &w).or_else(|| crate::cpu::gemm::product(&x, &w))
    {
        return y;
    }
    burn::tensor::module::linear(x, w, None)
}

/// The projection `l` applied to `x` (see [`times`]; the model's projections have no bias).
pub(crate) fn apply<const D: usize>(l: &Linear, x: Tensor<D>) -> Tensor<D> {
    match &l.bias {
        None => times(x, l.weight.val()),
        Some(_) => l.forward(x),
    }
}

impl Attention {
    fn new(cfg: &LlamaConfig, device: &Device) -> Self {
        let (d, h, hkv, hd) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        Self {
            q_proj: linear(d, h * hd, device),
            k_proj: linear(d, hkv * hd, device),
            v_proj: linear(d, hkv * hd, device),
            o_proj: linear(h * hd, d, device),
            beacon_q_proj: None,
            beacon_k_proj: None,
            beacon_v_proj: None,
            beacon_o_proj: None,
            beacon_q_lora: None,
            beacon_k_lora: None,
            beacon_v_lora: None,
            beacon_o_lora: None,
            num_heads: h,
            num_kv_heads: hkv,
            head_dim: hd,
        }
    }

    /// Applies `base` to all rows, or `base` to all but the last and `cand` to the last;
    /// also returns the last row's own output when `cand` is used.
    fn project(
        x: Tensor<3>,
        base: &Linear,
        cand: Option<&CandidateProj<'_>>,
    ) -> (Tensor<3>, Option<Tensor<3>>) {
        match cand {
            None => (apply(base, x), None),
            Some(cand) => {
                let t = x.dims()[1];
                let last = cand.forward(x.clone().narrow(1, t - 1, 1));
                if t == 1 {
                    return (last.clone(), Some(last));
                }
                let rest = apply(base, x.narrow(1, 0, t - 1));
                (Tensor::cat(vec![rest, last.clone()], 1), Some(last))
            }
        }
    }

    /// The keys and values of every row, and the output of the last `out` rows (their
    /// queries, attention and output projection only; `None` when `out` is 0).
    ///
    /// # Shapes
    /// - x: `[batch, T, hidden]` (already normalised)
    /// - cos, sin: `[T, head_dim]` for the rows' positions
    /// - past: keys/values `[batch, kv_heads, P, head_dim]`; row i attends to all of
    ///   them and to rows `0..=i` (causal, aligned at the end); the new rows are appended
    ///   to it (`P + T` positions after the call)
    /// - output: `[batch, out, hidden]`, and the new rows' keys/values
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        past: Option<&mut LayerKv>,
        rows: Rows,
        out: usize,
    ) -> (Option<Tensor<3>>, NewKv) {
        let [b, t, _] = x.dims();
        assert!(out <= t, "{out} output rows of {t}");
        let (h, hkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let cand = match rows {
            Rows::Plain => None,
            Rows::LastIsCandidate => Some(
                self.candidate_proj()
                    .expect("candidate rows need a model with candidate projections"),
            ),
        };
        let heads = |y: Tensor<3>, n: usize| {
            let r = y.dims()[1];
            y.reshape([b, r, n, hd]).swap_dims(1, 2)
        };
        let (k, cand_k) = Self::project(x.clone(), &self.k_proj, cand.as_ref().map(|c| &c[1]));
        let v = heads(
            Self::project(x.clone(), &self.v_proj, cand.as_ref().map(|c| &c[2])).0,
            hkv,
        );
        let k_rot = apply_tables(heads(k, hkv), cos, sin);
        // The candidate's key before RoPE, as its own small tensor (a view into `k` would
        // keep the whole chunk's keys alive a second time).
        let cand_k = cand_k.map(|y| y.reshape([b, 1, hkv, hd]).swap_dims(1, 2));

        // The new rows join the cache; the queries, if any row's output is read, attend to
        // all of it.
        let (k_all, v_all) = match past {
            Some(p) => {
                // A cache kept in another float type (compact chunk caches) is read in the
                // computation's, the new rows as computed.
                let other = (out > 0 && p.k.dtype() != k_rot.dtype()).then(|| {
                    (
                        Tensor::cat(vec![p.k.clone().cast(k_rot.dtype()), k_rot.clone()], 2),
                        Tensor::cat(vec![p.v.clone().cast(v.dtype()), v.clone()], 2),
                    )
                });
                p.append(LayerKv {
                    k: k_rot.clone(),
                    v: v.clone(),
                });
                other.unwrap_or_else(|| (p.k.clone(), p.v.clone()))
            }
            None => (k_rot.clone(), v.clone()),
        };
        let new_kv = NewKv { k_rot, v, cand_k };
        if out == 0 {
            return (None, new_kv);
        }
        // Queries only for the rows whose output is read, the last `out`, at their positions;
        // from here on `t` counts those rows.
        let last = |y: Tensor<2>| y.narrow(0, t - out, out);
        let x = if out == t {
            x
        } else {
            x.narrow(1, t - out, out)
        };
        let q = heads(
            Self::project(x, &self.q_proj, cand.as_ref().map(|c| &c[0])).0,
            h,
        );
        let q = apply_tables(q, &last(cos.clone()), &last(sin.clone()));
        let t = out;
        let o_cand = cand.as_ref().map(|c| &c[3]);
        #[cfg(feature = "flex")]
        if crate::cpu::applies(&q) {
            let out = crate::cpu::attention::attention(q, k_all, v_all);
            return (Some(Self::project(out, &self.o_proj, o_cand).0), new_kv);
        }
        let groups = h / hkv;
        // A single row sees every key, so it needs no mask, and the query heads that share
        // a key/value head can be that head's rows (head j reads key/value head j / groups,
        // as `repeat_kv`): decoding steps and candidate rows then read the keys and values
        // without copying them `groups` times, and a training step keeps one copy for its
        // backward pass.
        let (q, k_all, v_all) = if t == 1 {
            (q.reshape([b, hkv, groups, hd]), k_all, v_all)
        } else {
            (q, repeat_kv(k_all, groups), repeat_kv(v_all, groups))
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: t > 1,
        };
        let out = attention(q, k_all, v_all, None, None, options).reshape([b, h, t, hd]);
        let out = out.swap_dims(1, 2).reshape([b, t, h * hd]);
        (Some(Self::project(out, &self.o_proj, o_cand).0), new_kv)
    }
}

/// Repeats each key/value head `groups` times: `[b, hkv, s, d]` -> `[b, hkv * groups, s, d]`.
pub fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, hkv, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, hkv, groups, s, d])
        .reshape([b, hkv * groups, s, d])
}

/// SwiGLU feed-forward (`model.layers.N.mlp`).
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// # Shapes
    /// - x: `[batch, T, hidden]` -> `[batch, T, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (gate, up) = (apply(&self.gate_proj, x.clone()), apply(&self.up_proj, x));
        #[cfg(feature = "flex")]
        if crate::cpu::applies(&gate) {
            return apply(&self.down_proj, crate::cpu::swiglu::gate(gate, up));
        }
        apply(&self.down_proj, silu(gate) * up)
    }
}

/// One pre-norm decoder layer (`model.layers.N`).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    pub(crate) fn new(cfg: &LlamaConfig, device: &Device) -> Self {
        let (d, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let norm = || {
            RmsNormConfig::new(d)
                .with_epsilon(cfg.rms_norm_eps)
                .init(device)
        };
        Self {
            self_attn: Attention::new(cfg, device),
            mlp: Mlp {
                gate_proj: linear(d, ff, device),
                up_proj: linear(d, ff, device),
                down_proj: linear(ff, d, device),
            },
            input_layernorm: norm(),
            post_attention_layernorm: norm(),
        }
    }

    /// The layer on every row.
    ///
    /// # Shapes
    /// - x: `[batch, T, hidden]` -> `[batch, T, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        past: Option<&mut LayerKv>,
        rows: Rows,
    ) -> (Tensor<3>, NewKv) {
        let t = x.dims()[1];
        let (y, kv) = self.forward_last(x, cos, sin, past, rows, t);
        (y.expect("every row's output"), kv)
    }

    /// The keys and values of every row, and the output of the last `out` rows only
    /// (`None` when `out` is 0): what a last layer owes when only some rows are read after
    /// it (a prefill's last row, a chunk's keys and values).
    ///
    /// # Shapes
    /// - x: `[batch, T, hidden]` -> `[batch, out, hidden]`
    pub fn forward_last(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        past: Option<&mut LayerKv>,
        rows: Rows,
        out: usize,
    ) -> (Option<Tensor<3>>, NewKv) {
        let t = x.dims()[1];
        let (a, kv) = self.self_attn.forward(
            self.input_layernorm.forward(x.clone()),
            cos,
            sin,
            past,
            rows,
            out,
        );
        let Some(a) = a else {
            return (None, kv);
        };
        let x = if out == t {
            x
        } else {
            x.narrow(1, t - out, out)
        };
        let x = x + a;
        let x = x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x));
        (Some(x), kv)
    }
}

//! Rotary position embedding in the HF (`rotate_half`) layout.
//!
//! Angles are computed on the host in f32 exactly as transformers does
//! (`inv_freq` in f32, `position * inv_freq` in f32), so positions far from zero
//! round the same way as the reference.

use burn::prelude::*;

use crate::config::{Llama3Scaling, LlamaConfig};

/// Inverse frequencies and the rotation they define.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Builds the frequencies of `cfg` (with `llama3` scaling when configured).
    pub fn new(cfg: &LlamaConfig) -> Self {
        let dim = cfg.head_dim;
        let mut inv_freq: Vec<f32> = (0..dim / 2)
            .map(|i| {
                let exponent = (2 * i) as f32 / dim as f32;
                1.0 / (cfg.rope_theta as f32).powf(exponent)
            })
            .collect();
        if let Some(s) = &cfg.rope_scaling {
            llama3_scale(&mut inv_freq, s);
        }
        Self { inv_freq }
    }

    /// `(cos, sin)` tables of shape `[len, head_dim]` for positions `start..start + len`.
    pub fn tables(&self, start: usize, len: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half * 2);
        let mut sin = Vec::with_capacity(len * half * 2);
        for p in start..start + len {
            let row: Vec<f32> = self.inv_freq.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(row.iter().map(|a| a.cos()));
                sin.extend(row.iter().map(|a| a.sin()));
            }
        }
        let shape = [len, 2 * half];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }
}

/// `x * cos + rotate_half(x) * sin` with precomputed `[T, head_dim]` tables.
pub fn apply_tables(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    let [_, _, t, d] = x.dims();
    let cos = cos.clone().reshape([1, 1, t, d]);
    let sin = sin.clone().reshape([1, 1, t, d]);
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}

/// Llama 3.1 frequency scaling (transformers' `_compute_llama3_parameters`).
fn llama3_scale(inv_freq: &mut [f32], s: &Llama3Scaling) {
    let old = s.original_max_position_embeddings as f32;
    let low_wavelen = old / s.low_freq_factor as f32;
    let high_wavelen = old / s.high_freq_factor as f32;
    let factor = s.factor as f32;
    for f in inv_freq.iter_mut() {
        let wavelen = 2.0 * std::f32::consts::PI / *f;
        if wavelen > low_wavelen {
            *f /= factor;
        } else if wavelen >= high_wavelen {
            let smooth = (old / wavelen - s.low_freq_factor as f32)
                / (s.high_freq_factor as f32 - s.low_freq_factor as f32);
            *f = (1.0 - smooth) * *f / factor + smooth * *f;
        }
    }
}

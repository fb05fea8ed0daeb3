//! The SwiGLU gate of the feed-forward block, `silu(g) · u` with `silu(x) = x / (1 + e⁻ˣ)`,
//! in one pass over the two products (burn computes `silu` with a scalar `exp`, then
//! multiplies in a second pass).

use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{LANES, exp_neg, vectorised};

/// Elements per rayon task.
const PIECE: usize = 1 << 14;

/// `silu(gate) · up`, elementwise, for tensors of one shape. Call it only where
/// [`super::applies`] holds.
pub fn gate<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    let device = gate.device();
    let shape = gate.shape();
    let data = |x: Tensor<D>| x.into_data().try_into_vec::<f32>().expect("f32 tensor");
    let (mut g, u) = (data(gate), data(up));
    assert_eq!(g.len(), u.len(), "gate and up of different sizes");
    g.par_chunks_mut(PIECE)
        .zip(u.par_chunks(PIECE))
        .for_each(|(g, u)| apply(g, u));
    Tensor::from_data(TensorData::new(g, shape), &device)
}

vectorised!(fn apply(g: &mut [f32], u: &[f32]) -> () = apply_in);

#[inline(always)]
fn apply_in(g: &mut [f32], u: &[f32]) {
    let mut gs = g.chunks_exact_mut(LANES);
    let mut us = u.chunks_exact(LANES);
    for (g, u) in (&mut gs).zip(&mut us) {
        for j in 0..LANES {
            g[j] = silu(g[j]) * u[j];
        }
    }
    for (g, u) in gs.into_remainder().iter_mut().zip(us.remainder()) {
        *g = silu(*g) * u;
    }
}

/// `x / (1 + e⁻ˣ)`, with the exponential of `-|x|` only (never above 1), so that neither
/// sign overflows.
#[inline(always)]
fn silu(x: f32) -> f32 {
    let e = exp_neg(-x.abs());
    let sigmoid = if x >= 0.0 { 1.0 } else { e } / (1.0 + e);
    x * sigmoid
}

//! The SwiGLU gate of the feed-forward block, `silu(g) · u` with `silu(x) = x / (1 + e⁻ˣ)`,
//! in one pass over the two products (burn computes `silu` with a scalar `exp`, then
//! multiplies in a second pass), written over the gate's own buffer when nothing else holds
//! it (the products of [`super::gemm`] and [`super::gemv`] are such buffers).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{LANES, exp_neg, vectorised};

/// Elements per rayon task.
const PIECE: usize = 1 << 14;

/// `silu(gate) · up`, elementwise, for tensors of one shape. Call it only where
/// [`super::applies`] holds.
pub fn gate<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(gate.dims(), up.dims(), "gate and up of different shapes");
    let n = gate.shape().num_elements();
    let primitive = |x: Tensor<D>| {
        x.try_into_primitive::<Flex>()
            .expect("a tensor on the CPU backend")
    };
    let up = primitive(up).to_contiguous();
    let u = &up.storage::<f32>()[up.layout().start_offset()..][..n];
    let mut g = primitive(gate);
    // In place on a buffer of exactly these elements that nothing else holds; otherwise on
    // a copy of the gate.
    let own = g.layout().is_contiguous()
        && g.layout().start_offset() == 0
        && g.bytes().len() == n * size_of::<f32>()
        && g.is_unique();
    if !own {
        let shape = g.layout().shape().clone();
        let copy = g.to_contiguous();
        let values = copy.storage::<f32>()[copy.layout().start_offset()..][..n].to_vec();
        g = FlexTensor::from_data(TensorData::new(values, shape));
    }
    let buffer = g.try_storage_mut::<f32>().expect("a buffer of its own");
    buffer
        .par_chunks_mut(PIECE)
        .zip(u.par_chunks(PIECE))
        .for_each(|(g, u)| apply(g, u));
    Tensor::from_primitive::<Flex>(g)
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

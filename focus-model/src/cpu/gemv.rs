//! Products of a few rows with a weight matrix, the shape of every projection while decoding
//! (one row per step), in f32 on the CPU backend outside autodiff.
//!
//! Such a product reads each weight once and does two operations with it, so its speed is
//! the speed at which the weights stream from memory. burn-flex hands it to the `gemm`
//! crate's matrix-vector path, which runs on one thread (and burn-flex spreads products over
//! threads only above 2 M multiply-adds, which no projection of a small model reaches for one
//! row): one core then streams all the weights. Here the output columns are split into one
//! block per thread of rayon's pool, and each thread streams its share of the weights where
//! they lie: the weight tensor's own memory, borrowed, never copied.
//!
//! A weight of `[in, out]` may lie row by row (`w[i, j]` at `i · out + j`, burn's linear
//! layout) or be the transpose of an `[out, in]` matrix (`w[i, j]` at `j · in + i`, as
//! `embed_tokensᵀ` for tied embeddings). The first is summed row after row into the block's
//! outputs, the second as one dot product per output; each output's sum runs over `i` in one
//! order, with vector lanes over outputs (the first) or over `i` (the second). Other layouts
//! and other float types go back to burn's product. Tests: `tests/tests/cpu_kernels.rs`
//! (against an f64 reference) and the model's parity and fidelity tests, with their
//! tolerances unchanged.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use rayon::prelude::*;

use super::{LANES, vectorised};

/// The most rows a product may have to be taken here; larger ones are GEMMs, which the
/// `gemm` crate spreads over threads itself.
pub const MAX_ROWS: usize = 4;

/// How the weights lie in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `w[i, j]` at `i · out + j`.
    Rows,
    /// `w[i, j]` at `j · in + i`.
    Columns,
}

/// `x · w` for `x` `[.., in]` with at most [`MAX_ROWS`] rows in all and `w` `[in, out]`,
/// or `None` when this product does not serve it (more rows, weights not in f32 on the CPU
/// backend, or in another layout); `x` must satisfy [`super::applies`].
pub fn product<const D: usize>(x: &Tensor<D>, w: &Tensor<2>) -> Option<Tensor<D>> {
    let dims = x.dims();
    let [k, n] = w.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    if rows > MAX_ROWS || dims[D - 1] != k {
        return None;
    }
    let weights = w.clone().try_into_primitive::<Flex>().ok()?;
    if weights.dtype() != DType::F32 {
        return None;
    }
    let layout = weights.layout();
    let form = match layout.strides() {
        [a, 1] if *a == n as isize => Form::Rows,
        [1, b] if *b == k as isize => Form::Columns,
        _ => return None,
    };
    let start = layout.start_offset();
    let storage = weights.storage::<f32>();
    let w = storage.get(start..start + k * n)?;
    let x_data = x
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor");

    let blocks = rayon::current_num_threads().max(1);
    // Block widths a multiple of the vector lanes, so that only the last block has a tail.
    let width = n.div_ceil(blocks).next_multiple_of(LANES).max(LANES);
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(width))
        .into_par_iter()
        .map(|b| {
            let cols = b * width..((b + 1) * width).min(n);
            let mut out = vec![0.0; rows * cols.len()];
            match form {
                Form::Rows => by_rows(&x_data, w, k, n, cols.start, &mut out),
                Form::Columns => by_columns(&x_data, w, k, cols.start, &mut out),
            }
            out
        })
        .collect();
    let mut y = vec![0.0f32; rows * n];
    for (b, part) in parts.iter().enumerate() {
        let (start, len) = (b * width, part.len() / rows);
        for r in 0..rows {
            y[r * n + start..r * n + start + len].copy_from_slice(&part[r * len..(r + 1) * len]);
        }
    }
    let mut shape = dims;
    shape[D - 1] = n;
    Some(Tensor::from_data(TensorData::new(y, shape), &x.device()))
}

vectorised!(fn by_rows(x: &[f32], w: &[f32], k: usize, n: usize, first: usize, out: &mut [f32]) -> () = by_rows_in);

/// Outputs `first..first + width` of every row of `x` (`[rows, k]`) into `out`
/// (`[rows, width]`), the weights lying row by row (`[k, n]`): weight row `i`, scaled by
/// `x[r, i]`, added to the outputs, for `i` in order.
#[inline(always)]
fn by_rows_in(x: &[f32], w: &[f32], k: usize, n: usize, first: usize, out: &mut [f32]) {
    let rows = x.len() / k;
    let width = out.len() / rows;
    for i in 0..k {
        let weights = &w[i * n + first..i * n + first + width];
        for (r, out) in out.chunks_exact_mut(width).enumerate() {
            let a = x[r * k + i];
            for (o, w) in out.iter_mut().zip(weights) {
                *o = a.mul_add(*w, *o);
            }
        }
    }
}

vectorised!(fn by_columns(x: &[f32], w: &[f32], k: usize, first: usize, out: &mut [f32]) -> () = by_columns_in);

/// As [`by_rows_in`] for weights that are the transpose of `[n, k]`: output `j` of row `r`
/// is the dot product of `x[r]` with weight row `j` of that matrix, in [`LANES`] partial
/// sums added at the end.
#[inline(always)]
fn by_columns_in(x: &[f32], w: &[f32], k: usize, first: usize, out: &mut [f32]) {
    let rows = x.len() / k;
    let width = out.len() / rows;
    for c in 0..width {
        let weights = &w[(first + c) * k..(first + c + 1) * k];
        for r in 0..rows {
            let x = &x[r * k..(r + 1) * k];
            let mut acc = [0.0f32; LANES];
            let (xs, ws) = (x.chunks_exact(LANES), weights.chunks_exact(LANES));
            let tail: f32 = xs
                .remainder()
                .iter()
                .zip(ws.remainder())
                .map(|(a, b)| a * b)
                .sum();
            for (x, w) in xs.zip(ws) {
                for l in 0..LANES {
                    acc[l] = x[l].mul_add(w[l], acc[l]);
                }
            }
            out[r * width + c] = acc.iter().sum::<f32>() + tail;
        }
    }
}

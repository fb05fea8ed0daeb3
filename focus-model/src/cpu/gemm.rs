//! Products of many rows with a weight matrix (a prefill, the chunk passes, training's frozen
//! passes), in f32 on the CPU backend outside autodiff.
//!
//! burn-flex hands such a product to the `gemm` crate, but it allocates the output as zeroed
//! bytes, which cubecl's `Bytes::from_bytes_vec` then copies once more into a buffer of its
//! own alignment: every output is zeroed and copied before the product writes it (3.3 % of
//! a 512-token prefill in that copy and 1.8 % in the zeroing, `perf` in docs/benchmarks.md). Here
//! the same `gemm` call (the same strides, the same threshold for using the threads, so the
//! same blocking and sums) writes into a buffer that becomes the output tensor as it is, and
//! the input and the weights are read where they lie.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

/// Multiply-adds from which a product runs on rayon's threads: burn-flex's threshold for a
/// two-dimensional product, so that both split the work alike.
const THREADS_FROM: usize = 192 * 192 * 192;

/// `x · w` for `x` `[.., in]` (contiguous) and `w` `[in, out]` (any layout with non-negative
/// strides), or `None` when this product does not serve them (another float type or
/// backend, a strided input). `x` must satisfy [`super::applies`].
pub fn product<const D: usize>(x: &Tensor<D>, w: &Tensor<2>) -> Option<Tensor<D>> {
    let dims = x.dims();
    let [k, n] = w.dims();
    let m = dims[..D - 1].iter().product::<usize>();
    if dims[D - 1] != k || m == 0 || k == 0 || n == 0 {
        return None;
    }
    let weights = w.clone().try_into_primitive::<Flex>().ok()?;
    let input = x.clone().try_into_primitive::<Flex>().ok()?;
    if weights.dtype() != DType::F32 || input.dtype() != DType::F32 {
        return None;
    }
    let (wl, xl) = (weights.layout(), input.layout());
    let &[w_rs, w_cs] = wl.strides() else {
        return None;
    };
    if !xl.is_contiguous() || w_rs < 0 || w_cs < 0 {
        return None;
    }
    let w_data = weights.storage::<f32>();
    let x_data = input.storage::<f32>();
    let (w_start, x_start) = (wl.start_offset(), xl.start_offset());
    // The last element each operand's strides reach lies inside its buffer.
    let w_last = w_start + (k - 1) * w_rs as usize + (n - 1) * w_cs as usize;
    if w_last >= w_data.len() || x_start + m * k > x_data.len() {
        return None;
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= THREADS_FROM {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let mut out = Vec::<f32>::with_capacity(m * n);
    // SAFETY: the operands' pointers and strides stay inside their buffers (checked above);
    // `out` has room for `m · n` elements, row `i` at `i · n`; with `read_dst` false `gemm`
    // writes every element of the destination without reading it, so all `m · n` are
    // initialised when `set_len` runs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x_data.as_ptr().add(x_start),
            1,
            k as isize,
            w_data.as_ptr().add(w_start),
            w_cs,
            w_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    let mut shape = dims;
    shape[D - 1] = n;
    Some(Tensor::from_data(TensorData::new(out, shape), &x.device()))
}

//! Key/value caches that grow in place on the CPU backend.
//!
//! burn's `cat` copies every earlier position to append one, so a decoding step that appends
//! its row to each layer's cache copies the whole cache, once per layer and token (8 % of a
//! decoding step at 512 positions, docs/benchmarks.md; at 32K tokens of FocusLLM memory, the
//! chunk caches' gigabytes). Here a cache is a view `[b, h, len, d]` of a buffer
//! `[b, h, cap, d]`: the rows `len..cap` of every head are spare. Appending `t` rows writes
//! them into the spare rows when there are `t` of them and no other tensor shares the buffer;
//! otherwise it copies once into a new buffer, with [`SPARE`] spare rows after a decoding
//! step. A shared buffer (a chunk cache also kept by the chunk memory, a view another tensor
//! still holds) is never written. The values are those `cat` gives: only where they are
//! stored differs.

use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::prelude::*;
use burn::tensor::{DType, Element, Shape, TensorData, bf16, f16};

/// Spare rows a cache gets when a decoding step (an append of at most [`STEP_ROWS`] rows)
/// moves it to a new buffer: a copy of the cache every 16 steps in place of two at every
/// step, for 16/`len` more memory (FocusLLM's chunk caches hold about 640 rows at `S = 512`).
/// Larger appends (a prompt, the dynamic prompts after the chunks) get none, so that a
/// prefill's peak memory does not grow.
pub const SPARE: usize = 16;

/// The most rows an append may have to be given spare rows.
pub const STEP_ROWS: usize = 4;

/// Whether [`append`] serves these tensors: the CPU backend outside autodiff, one float
/// type of f32, f16 and bf16, and shapes `[b, h, _, d]` that agree.
pub fn serves(past: &Tensor<4>, new: &Tensor<4>) -> bool {
    let device = past.device();
    let ([b, h, _, d], [nb, nh, _, nd]) = (past.dims(), new.dims());
    !device.is_autodiff()
        && device == Device::flex()
        && new.device() == device
        && past.dtype() == new.dtype()
        && matches!(past.dtype(), DType::F32 | DType::F16 | DType::BF16)
        && [b, h, d] == [nb, nh, nd]
}

/// `past` with `new` appended along axis 2, in place where `past`'s buffer allows it. Call
/// it only where [`serves`] holds, with tensors nothing else holds (a clone kept elsewhere
/// makes the buffer shared, and it is then copied).
pub fn append(past: Tensor<4>, new: Tensor<4>) -> Tensor<4> {
    let [b, h, len, d] = past.dims();
    let t = new.dims()[2];
    let grown = match past.dtype() {
        DType::F32 => grow::<f32>(past, new, [b, h, len, d], t),
        DType::F16 => grow::<f16>(past, new, [b, h, len, d], t),
        DType::BF16 => grow::<bf16>(past, new, [b, h, len, d], t),
        dtype => unreachable!("a cache in {dtype:?}: `serves` excludes it"),
    };
    Tensor::from_primitive::<Flex>(grown)
}

/// The rows of `past` (`[b, h, len, d]`) followed by those of `new` (`t` rows).
fn grow<E: Element + bytemuck::Pod>(
    past: Tensor<4>,
    new: Tensor<4>,
    [b, h, len, d]: [usize; 4],
    t: usize,
) -> FlexTensor {
    let new = new
        .into_data()
        .try_into_vec::<E>()
        .expect("rows in the cache's float type");
    let mut past = past
        .try_into_primitive::<Flex>()
        .expect("a tensor on the CPU backend");
    let rows = len + t;
    // In place: a unique buffer laid out `[b, h, cap, d]` from its start, `cap ≥ len + t`.
    if let Some(cap) = capacity(&past, [b, h, len, d])
        && cap >= rows
        && let Some(buffer) = past.try_storage_mut::<E>()
    {
        for (bh, rows_of) in new.chunks_exact(t * d).enumerate() {
            let at = (bh * cap + len) * d;
            buffer[at..at + t * d].copy_from_slice(rows_of);
        }
        return past.with_layout(cache_layout([b, h, rows, d], cap));
    }
    // A new buffer with spare rows, `past` read where it lies (rows of `d` contiguous
    // elements; any other layout is made contiguous first).
    let past = if past.layout().strides()[3] == 1 {
        past
    } else {
        past.to_contiguous()
    };
    let (old, layout) = (past.storage::<E>(), past.layout());
    let s = layout.strides();
    let cap = rows + if t <= STEP_ROWS { SPARE } else { 0 };
    let mut buffer = vec![E::zeroed(); b * h * cap * d];
    for (bh, head) in buffer.chunks_exact_mut(cap * d).enumerate() {
        let from =
            layout.start_offset() as isize + (bh / h) as isize * s[0] + (bh % h) as isize * s[1];
        for (r, row) in head[..len * d].chunks_exact_mut(d).enumerate() {
            let at = (from + r as isize * s[2]) as usize;
            row.copy_from_slice(&old[at..at + d]);
        }
        head[len * d..rows * d].copy_from_slice(&new[bh * t * d..(bh + 1) * t * d]);
    }
    FlexTensor::from_data(TensorData::new(buffer, [b, h, cap, d]))
        .with_layout(cache_layout([b, h, rows, d], cap))
}

/// The layout of a cache of `[b, h, rows, d]` in a buffer `[b, h, cap, d]`.
fn cache_layout([b, h, rows, d]: [usize; 4], cap: usize) -> Layout {
    let strides = vec![(h * cap * d) as isize, (cap * d) as isize, d as isize, 1];
    Layout::new(Shape::new([b, h, rows, d]), strides, 0)
}

/// The rows per head of the buffer behind a view `[b, h, len, d]` laid out as a cache's
/// (strides `h · cap · d, cap · d, d, 1` from offset 0, a buffer of `b · h · cap · d`
/// elements), or `None` for any other layout.
fn capacity(past: &FlexTensor, [b, h, _, d]: [usize; 4]) -> Option<usize> {
    let layout = past.layout();
    let &[sb, sh, sr, sd] = layout.strides() else {
        return None;
    };
    let d = d as isize;
    if layout.start_offset() != 0 || sd != 1 || sr != d || sh < d || sh % d != 0 {
        return None;
    }
    let cap = (sh / d) as usize;
    let size = b * h * cap * d as usize;
    let fits = past.bytes().len() == size * past.dtype().size();
    (sb == (h * cap) as isize * d && fits).then_some(cap)
}

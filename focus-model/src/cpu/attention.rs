//! Attention in f32 on the CPU backend (burn-flex), outside autodiff.
//!
//! burn-flex's attention takes `exp` one score at a time through the C library and scores
//! every key tile of a causal pass, masked or not (docs/benchmarks.md has the profile). This
//! kernel computes the same function, `softmax(q kᵀ / √d) v` with the causal mask aligned at
//! the end (row `i` of `t` sees the first `s - t + i + 1` of `s` keys), in blocks:
//!
//! - a task is [`ROWS`] query rows of one head; tasks run on rayon's pool;
//! - for each tile of [`KEYS`] keys that some row of the task sees: one GEMM for the scores,
//!   then per row the online softmax (running maximum and sum, the row's output rescaled
//!   when the maximum grows) with a vectorised `exp`, then one GEMM adding the tile's
//!   weighted values; tiles no row sees are never computed;
//! - query heads that share a key/value head (grouped-query attention) read it in place;
//! - the output is written as `[batch, rows, heads · head_dim]`, the layout the output
//!   projection reads, so no transpose follows.
//!
//! The GEMMs are the `gemm` crate's, which burn-flex's matmul uses too. Tests:
//! `tests/tests/cpu_kernels.rs` (against an f64 reference and against burn's attention) and
//! every parity and fidelity test of the model, whose tolerances do not change.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{LANES, exp_neg, vectorised};

/// Query rows per task.
pub const ROWS: usize = 64;
/// Keys per tile.
pub const KEYS: usize = 256;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Query rows `t`.
    pub rows: usize,
    /// Keys `s` (at least `t`: the last `t` keys are the rows' own).
    pub keys: usize,
    pub head_dim: usize,
}

/// Causal attention (aligned at the end) of `q` `[b, h, t, d]` over `k`, `v`
/// `[b, h_kv, s, d]` (`h` a multiple of `h_kv`, `s ≥ t`), as `[b, t, h · d]`. Call it only
/// where [`super::applies`] holds.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<3> {
    let device = q.device();
    let [batch, heads, rows, head_dim] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let dims = Dims {
        batch,
        heads,
        kv_heads,
        rows,
        keys,
        head_dim,
    };
    let q = q.into_data().try_into_vec::<f32>().expect("f32 tensor");
    // Keys and values are read where they lie (a cache's view of a longer buffer,
    // crate::cpu::kv), not copied.
    let (k, v) = (Borrowed::new(k), Borrowed::new(v));
    let out = attend_in(&q, k.heads(), v.heads(), dims);
    Tensor::from_data(
        TensorData::new(out, [batch, rows, heads * head_dim]),
        &device,
    )
}

/// A `[b, h_kv, s, d]` tensor's buffer, borrowed, with its rows of `d` contiguous.
#[derive(Debug)]
struct Borrowed {
    tensor: FlexTensor,
}

impl Borrowed {
    fn new(x: Tensor<4>) -> Self {
        let d = x.dims()[3] as isize;
        let tensor = x
            .try_into_primitive::<Flex>()
            .expect("a tensor on the CPU backend");
        let strides = tensor.layout().strides();
        let rows = strides[3] == 1 && strides[2] == d && strides[0] >= 0 && strides[1] >= 0;
        Self {
            tensor: if rows { tensor } else { tensor.to_contiguous() },
        }
    }

    fn heads(&self) -> Heads<'_> {
        let layout = self.tensor.layout();
        let s = layout.strides();
        Heads {
            data: self.tensor.storage::<f32>(),
            start: layout.start_offset(),
            batch: s[0] as usize,
            head: s[1] as usize,
        }
    }
}

/// Keys or values `[b, h_kv, s, d]` in a buffer: head `h` of batch `b` is the `s · d`
/// elements from `start + b · batch + h · head`.
#[derive(Debug, Clone, Copy)]
pub struct Heads<'a> {
    pub data: &'a [f32],
    pub start: usize,
    pub batch: usize,
    pub head: usize,
}

impl<'a> Heads<'a> {
    /// A row-major `[b, h_kv, s, d]` slice.
    pub fn contiguous(data: &'a [f32], dims: Dims) -> Self {
        let head = dims.keys * dims.head_dim;
        Self {
            data,
            start: 0,
            batch: dims.kv_heads * head,
            head,
        }
    }

    /// The keys or values of key/value head `h` of batch `b`.
    fn of(self, b: usize, h: usize, dims: Dims) -> &'a [f32] {
        let at = self.start + b * self.batch + h * self.head;
        &self.data[at..at + dims.keys * dims.head_dim]
    }
}

/// [`attention`] on slices: `q` `[b, h, t, d]`, `k` and `v` `[b, h_kv, s, d]`, row-major;
/// returns `[b, t, h, d]`.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], dims: Dims) -> Vec<f32> {
    assert_eq!(
        k.len(),
        dims.batch * dims.kv_heads * dims.keys * dims.head_dim,
        "keys of {dims:?}"
    );
    assert_eq!(v.len(), k.len(), "values of {dims:?}");
    attend_in(
        q,
        Heads::contiguous(k, dims),
        Heads::contiguous(v, dims),
        dims,
    )
}

/// [`attend`] with keys and values wherever their heads lie.
pub fn attend_in(q: &[f32], k: Heads<'_>, v: Heads<'_>, dims: Dims) -> Vec<f32> {
    let Dims {
        batch,
        heads,
        kv_heads,
        rows,
        keys,
        head_dim: d,
    } = dims;
    assert!(
        kv_heads > 0 && heads.is_multiple_of(kv_heads) && keys >= rows,
        "attention shapes: {dims:?}"
    );
    assert_eq!(q.len(), batch * heads * rows * d, "queries of {dims:?}");
    let blocks = rows.div_ceil(ROWS);
    let tasks = batch * heads * blocks;
    let groups = heads / kv_heads;
    let mut out = vec![0.0f32; batch * rows * heads * d];
    let dst = Output(out.as_mut_ptr());
    (0..tasks)
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, task| {
            let (bh, block) = (task / blocks, task % blocks);
            let (b, h) = (bh / heads, bh % heads);
            let r0 = block * ROWS;
            let r1 = (r0 + ROWS).min(rows);
            let q_at = (bh * rows + r0) * d;
            let task = Task {
                q: &q[q_at..q_at + (r1 - r0) * d],
                k: k.of(b, h / groups, dims),
                v: v.of(b, h / groups, dims),
                first_row: r0,
                offset: keys - rows,
                head_dim: d,
            };
            run_task(&task, scratch);
            for (i, row) in scratch.out.chunks_exact(d).enumerate() {
                let at = ((b * rows + r0 + i) * heads + h) * d;
                // SAFETY: `at..at + d` is inside `out` (row `r0 + i < rows` of batch `b`,
                // head `h`), and no other task writes it: each (batch, head, block of rows)
                // is one task. `out` outlives the parallel loop.
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst.at(at), d) };
            }
        });
    out
}

/// The output's buffer, written by the tasks in disjoint places.
#[derive(Clone, Copy)]
struct Output(*mut f32);

// SAFETY: the tasks write disjoint elements (see `attend`), and the buffer outlives them.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

impl Output {
    /// The element `at` (a method, so that closures capture the whole `Output`).
    fn at(self, at: usize) -> *mut f32 {
        self.0.wrapping_add(at)
    }
}

/// One task's inputs: its query rows, its head's keys and values.
struct Task<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    /// Index of the task's first row among the call's rows.
    first_row: usize,
    /// Keys before the first row's own (`s - t`).
    offset: usize,
    head_dim: usize,
}

/// Buffers a rayon job reuses across its tasks; `out` holds the last task's rows `[m, d]`.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
    out: Vec<f32>,
}

vectorised!(fn run_task(task: &Task, scratch: &mut Scratch) -> () = run_task_in);

/// The task's output rows `[m, d]` into `scratch.out`: the body of [`run_task`], inlined
/// into each of its instruction-set variants (see [`vectorised`]) so that the softmax loops
/// are vectorised for them.
#[inline(always)]
fn run_task_in(task: &Task, scratch: &mut Scratch) {
    let d = task.head_dim;
    let m = task.q.len() / d;
    let scale = 1.0 / (d as f32).sqrt();
    // Keys seen by the task's last row; rows before it see fewer.
    let seen = task.offset + task.first_row + m;
    let Scratch {
        scores,
        max,
        sum,
        out,
    } = scratch;
    scores.resize(m * KEYS, 0.0);
    max.clear();
    max.resize(m, f32::NEG_INFINITY);
    sum.clear();
    sum.resize(m, 0.0);
    out.clear();
    out.resize(m * d, 0.0);
    for start in (0..seen).step_by(KEYS) {
        let n = KEYS.min(seen - start);
        let tile = &mut scores[..m * n];
        // SAFETY: `tile` is `[m, n]`, the task's queries `[m, d]` and the tile's keys
        // `[n, d]` (read transposed), all row-major and in bounds.
        unsafe {
            gemm::gemm(
                m,
                n,
                d,
                tile.as_mut_ptr(),
                1,
                n as isize,
                false,
                task.q.as_ptr(),
                1,
                d as isize,
                task.k.as_ptr().add(start * d),
                d as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (i, row) in tile.chunks_exact_mut(n).enumerate() {
            let visible = (task.offset + task.first_row + i + 1).saturating_sub(start);
            let visible = visible.min(n);
            let (seen_part, masked) = row.split_at_mut(visible);
            masked.fill(0.0);
            if visible == 0 {
                continue;
            }
            let new_max = max[i].max(row_max(seen_part));
            let correction = if max[i] == f32::NEG_INFINITY {
                0.0
            } else {
                ((max[i] - new_max) * scale).exp()
            };
            if correction != 1.0 {
                out[i * d..(i + 1) * d]
                    .iter_mut()
                    .for_each(|o| *o *= correction);
            }
            sum[i] = sum[i] * correction + exp_shifted(seen_part, new_max, scale);
            max[i] = new_max;
        }
        // SAFETY: `out` is `[m, d]`, the weights `[m, n]`, the tile's values `[n, d]`, all
        // row-major and in bounds.
        unsafe {
            gemm::gemm(
                m,
                d,
                n,
                out.as_mut_ptr(),
                1,
                d as isize,
                true,
                tile.as_ptr(),
                1,
                n as isize,
                task.v.as_ptr().add(start * d),
                1,
                d as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
    for (row, s) in out.chunks_exact_mut(d).zip(sum.iter()) {
        let inv = 1.0 / s;
        row.iter_mut().for_each(|o| *o *= inv);
    }
}

#[inline(always)]
fn row_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    acc.iter().fold(tail, |a, &x| a.max(x))
}

/// Replaces each `x` by `exp((x - max) · scale)` and returns their sum.
#[inline(always)]
fn exp_shifted(xs: &mut [f32], max: f32, scale: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            let e = exp_neg((c[j] - max) * scale);
            c[j] = e;
            acc[j] += e;
        }
    }
    let mut total = 0.0;
    for x in chunks.into_remainder() {
        *x = exp_neg((*x - max) * scale);
        total += *x;
    }
    total + acc.iter().sum::<f32>()
}

//! The CPU kernels (`focus_model::cpu`) against f64 references written from their
//! definitions, and against the burn operations they replace.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::silu;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Distribution, module};
use focus_model::cpu::attention::{self, Dims};
use focus_model::cpu::{applies, exp_neg, gemm, gemv, kv, swiglu};
use focus_model::layers::LayerKv;
use focus_model::layers::repeat_kv;
use focus_tests::{max_abs_diff, values};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// `softmax(q kᵀ / √d) v` in f64, causal aligned at the end, as `[b, t, h, d]`.
fn reference(q: &[f32], k: &[f32], v: &[f32], dims: Dims) -> Vec<f64> {
    let Dims {
        batch,
        heads,
        kv_heads,
        rows,
        keys,
        head_dim: d,
    } = dims;
    let mut out = vec![0.0; batch * rows * heads * d];
    for b in 0..batch {
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            for i in 0..rows {
                let qi = &q[((b * heads + h) * rows + i) * d..][..d];
                let seen = keys - rows + i + 1;
                let scores: Vec<f64> = (0..seen)
                    .map(|j| {
                        let kj = &k[((b * kv_heads + kvh) * keys + j) * d..][..d];
                        let dot: f64 = qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                        dot / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = w.iter().sum();
                let o = &mut out[((b * rows + i) * heads + h) * d..][..d];
                for (j, wj) in w.iter().enumerate() {
                    let vj = &v[((b * kv_heads + kvh) * keys + j) * d..][..d];
                    for (o, &x) in o.iter_mut().zip(vj) {
                        *o += wj / total * x as f64;
                    }
                }
            }
        }
    }
    out
}

fn random(n: usize, rng: &mut StdRng, spread: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-spread..spread)).collect()
}

#[test]
fn the_exponential_is_within_two_units_in_the_last_place_below_zero() {
    let mut worst: f64 = 0.0;
    for i in 0..=870_000 {
        let x = -(i as f32) * 1e-4;
        let got = exp_neg(x) as f64;
        let want = (x as f64).exp();
        worst = worst.max((got - want).abs() / want);
    }
    // Observed: 9.7e-8 relative (an f32 unit in the last place is 6e-8 to 1.2e-7).
    assert!(worst < 2e-7, "largest relative error {worst:e}");
    // Below the clamp: a number negligible beside a row's largest weight (1).
    assert!(exp_neg(-1e4) < 2e-38 && exp_neg(f32::NEG_INFINITY) < 2e-38);
}

#[test]
fn the_kernel_equals_attention_from_its_definition() {
    let mut rng = StdRng::seed_from_u64(7);
    // (batch, heads, kv heads, rows, keys, head dim): one decoding row; rows and keys on and
    // off the block and tile sizes (64 and 256); keys before the rows (a cache, chunk
    // keys); grouped heads 3 to 1 as in SmolLM2; several batches.
    let shapes = [
        (2, 6, 2, 1, 300, 64),
        (1, 9, 3, 70, 70, 64),
        (1, 3, 3, 130, 600, 32),
        (2, 4, 1, 300, 300, 16),
        (1, 2, 2, 64, 512, 8),
        (3, 3, 1, 257, 1025, 64),
    ];
    for (batch, heads, kv_heads, rows, keys, head_dim) in shapes {
        let dims = Dims {
            batch,
            heads,
            kv_heads,
            rows,
            keys,
            head_dim,
        };
        // Spread 2: dot products up to about ±20 after scaling, so that the softmax is peaked
        // and the running maximum moves between tiles.
        let q = random(batch * heads * rows * head_dim, &mut rng, 2.0);
        let k = random(batch * kv_heads * keys * head_dim, &mut rng, 2.0);
        let v = random(k.len(), &mut rng, 1.0);
        let got = attention::attend(&q, &k, &v, dims);
        let want = reference(&q, &k, &v, dims);
        let err = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max);
        // Observed: at most 4.7e-7 over these shapes (values within ±1).
        assert!(err < 2e-6, "{dims:?}: largest error {err:e}");
    }
}

#[test]
fn the_kernel_equals_burns_attention_on_the_cpu() {
    let device = Device::flex();
    let (b, h, hkv, t, s, d) = (2, 9, 3, 100, 400, 64);
    let normal = Distribution::Normal(0.0, 1.0);
    let q = Tensor::<4>::random([b, h, t, d], normal, &device);
    let k = Tensor::<4>::random([b, hkv, s, d], normal, &device);
    let v = Tensor::<4>::random([b, hkv, s, d], normal, &device);
    assert!(applies(&q));
    assert!(!applies(&q.clone().cast(DType::F16)));
    assert!(!applies(&q.clone().autodiff()));
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: true,
    };
    let burn = module::attention(
        q.clone(),
        repeat_kv(k.clone(), h / hkv),
        repeat_kv(v.clone(), h / hkv),
        None,
        None,
        options,
    )
    .swap_dims(1, 2)
    .reshape([b, t, h * d]);
    let ours = attention::attention(q, k, v);
    let err = max_abs_diff(&values(ours), &values(burn));
    // Observed: 7.0e-7 (both f32; the two sum in different orders).
    assert!(err < 5e-6, "largest difference {err:e}");
}

#[test]
fn the_swiglu_gate_equals_its_definition_and_burns() {
    let device = Device::flex();
    // Gates from -120 to 120 (the exponential's clamp, both signs' branches), in a length
    // that leaves a remainder after the vector lanes and spans several rayon pieces.
    let n = 40_003;
    let g: Vec<f32> = (0..n)
        .map(|i| (i as f32 / n as f32 - 0.5) * 240.0)
        .collect();
    let mut rng = StdRng::seed_from_u64(3);
    let u = random(n, &mut rng, 3.0);
    let tensor = |x: &[f32]| Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, n]), &device);
    let ours = values(swiglu::gate(tensor(&g), tensor(&u)));
    let burn = values(silu(tensor(&g)) * tensor(&u));
    let (mut vs_definition, mut vs_burn) = (0.0f64, 0.0f64);
    for i in 0..n {
        let x = g[i] as f64;
        let want = x / (1.0 + (-x).exp()) * u[i] as f64;
        let scale = want.abs().max(1e-30);
        vs_definition = vs_definition.max((ours[i] as f64 - want).abs() / scale.max(1.0));
        vs_burn = vs_burn.max(((ours[i] - burn[i]) as f64).abs() / scale.max(1.0));
    }
    // Observed: 1.6e-7 and 1.8e-7 (relative to the value where it exceeds 1, absolute below).
    assert!(
        vs_definition < 1e-6,
        "against the definition: {vs_definition:e}"
    );
    assert!(vs_burn < 1e-6, "against burn: {vs_burn:e}");
    // A gate that another tensor still holds is not written: the result goes to a copy.
    let (held, up) = (tensor(&g), tensor(&u));
    let again = values(swiglu::gate(held.clone(), up));
    assert_eq!(values(held), g, "the held gate changed");
    assert_eq!(again, ours, "the copy's result differs");
}

#[test]
fn the_many_row_product_equals_burns_bit_for_bit() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(12);
    // (rows, in, out): a 512-token prefill through SmolLM2's shapes (above burn-flex's
    // threshold for threads), a few rows more than `gemv` takes (below it), odd widths.
    for (m, k, n) in [
        (512, 576, 192),
        (512, 576, 1536),
        (512, 1536, 576),
        (5, 37, 101),
    ] {
        let x = Tensor::<2>::from_data(
            TensorData::new(random((m + 1) * k, &mut rng, 1.0), [m + 1, k]),
            &device,
        );
        // An input that starts inside its buffer (a row view), and both weight layouts.
        let x = x.narrow(0, 1, m);
        let w = random(k * n, &mut rng, 1.0);
        let by_rows = Tensor::<2>::from_data(TensorData::new(w.clone(), [k, n]), &device);
        let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
        let by_columns = Tensor::<2>::from_data(TensorData::new(wt, [n, k]), &device).transpose();
        for (form, weights) in [("rows", by_rows), ("columns", by_columns)] {
            let ours = gemm::product(&x, &weights).expect("a product it takes");
            let burn = x.clone().matmul(weights);
            // The same `gemm` call (strides, threads) as burn-flex's two-dimensional product.
            assert_eq!(values(ours), values(burn), "{m}×{k}×{n}, {form}");
        }
    }
    // Not taken: an input whose rows are not contiguous, another float type.
    let x = Tensor::<2>::random([8, 6], Distribution::Default, &device);
    let w = Tensor::<2>::random([8, 8], Distribution::Default, &device);
    assert!(gemm::product(&x.clone().transpose(), &w).is_none());
    assert!(gemm::product(&x.clone().transpose(), &w.clone().cast(DType::F16)).is_none());
    let laid_out = Tensor::<2>::from_data(x.transpose().into_data(), &device);
    assert!(gemm::product(&laid_out, &w).is_some());
}

#[test]
fn the_few_row_product_equals_its_definition_in_both_weight_layouts() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(11);
    // (rows, in, out): one decoding row through SmolLM2's shapes (576 → 192 for keys and
    // values, 576 → 1536 and back), widths off the vector lanes (16) and the blocks, the
    // most rows taken (4), and a vocabulary-sized output.
    let shapes = [
        (1, 576, 192),
        (1, 576, 1536),
        (1, 1536, 576),
        (3, 37, 101),
        (4, 64, 17),
        (1, 576, 49_152),
    ];
    for (rows, k, n) in shapes {
        let x = random(rows * k, &mut rng, 1.0);
        let w = random(k * n, &mut rng, 1.0);
        // The same `[k, n]` matrix lying row by row, and as the transpose of its `[n, k]`
        // transpose (the tied embeddings' layout).
        let by_rows = Tensor::<2>::from_data(TensorData::new(w.clone(), [k, n]), &device);
        let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
        let by_columns = Tensor::<2>::from_data(TensorData::new(wt, [n, k]), &device).transpose();
        let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [1, rows, k]), &device);
        let want: Vec<f64> = (0..rows * n)
            .map(|o| {
                let (r, j) = (o / n, o % n);
                (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + j] as f64)
                    .sum()
            })
            .collect();
        let err = |got: Vec<f32>| {
            got.iter()
                .zip(&want)
                .map(|(&g, &w)| (g as f64 - w).abs())
                .fold(0.0, f64::max)
        };
        // burn's product of the same operands, against the same reference.
        let burn = err(values(xt.clone().matmul(by_rows.clone().unsqueeze())));
        for (form, weights) in [("rows", by_rows), ("columns", by_columns)] {
            let ours = err(values(
                gemv::product(&xt, &weights).expect("a product it takes"),
            ));
            // Observed: the same error as burn's in the row layout (5.0e-5 at most, for sums
            // of 1,536 products within ±1), 2.4 to 6.4 times smaller in the column layout
            // (sixteen partial sums).
            assert!(
                ours <= 1.5 * burn,
                "{rows}×{k}×{n}, {form}: largest error {ours:e}, burn's {burn:e}"
            );
        }
    }
    // Not taken: more rows than MAX_ROWS, weights in another float type or layout.
    let x = Tensor::<2>::random([gemv::MAX_ROWS + 1, 8], Distribution::Default, &device);
    let w = Tensor::<2>::random([8, 8], Distribution::Default, &device);
    assert!(gemv::product(&x, &w).is_none());
    let x = x.narrow(0, 0, 1);
    assert!(gemv::product(&x, &w.clone().cast(DType::F16)).is_none());
    let strided = Tensor::<2>::random([8, 16], Distribution::Default, &device).narrow(1, 0, 8);
    assert!(gemv::product(&x, &strided).is_none());
    assert!(gemv::product(&x, &w).is_some());
}

/// The buffer behind a CPU tensor (its address), to tell a write in place from a copy.
fn buffer(x: &Tensor<4>) -> *const u8 {
    let primitive = x
        .clone()
        .try_into_primitive::<Flex>()
        .expect("a CPU tensor");
    primitive.bytes().as_ptr()
}

#[test]
fn a_cache_grows_in_place_to_what_cat_gives_and_never_writes_a_shared_buffer() {
    let device = Device::flex();
    for dtype in [DType::F32, DType::BF16] {
        let rows = |t: usize| {
            Tensor::<4>::random([2, 3, t, 8], Distribution::Normal(0.0, 1.0), &device).cast(dtype)
        };
        let first = rows(5);
        let kept = values(first.clone());
        // `first` is still held, so the first append copies (a decoding step's: with 16 spare
        // rows); the later ones write in place, up to 22 rows.
        let (mut cache, mut want) = (first.clone(), first.clone());
        assert!(kv::serves(&cache, &rows(1)));
        for (i, t) in [1, 3, 1, 12].into_iter().enumerate() {
            let new = rows(t);
            want = Tensor::cat(vec![want, new.clone()], 2);
            let before = buffer(&cache);
            cache = kv::append(cache, new);
            assert_eq!(buffer(&cache) == before, i > 0, "{dtype:?}: append {i}");
        }
        assert_eq!(values(cache.clone()), values(want.clone()), "{dtype:?}");
        assert_eq!(values(first), kept, "{dtype:?}: the shared first rows");
        // Past the spare rows: a new buffer, the same values.
        let new = rows(1);
        want = Tensor::cat(vec![want, new.clone()], 2);
        let before = buffer(&cache);
        cache = kv::append(cache, new);
        assert_ne!(buffer(&cache), before);
        assert_eq!(values(cache.clone()), values(want.clone()), "{dtype:?}");
        // A view another tensor holds is copied, and the holder keeps its values.
        let held = cache.clone();
        let grown = kv::append(cache, rows(1));
        assert_ne!(buffer(&grown), buffer(&held));
        assert_eq!(values(held), values(want), "{dtype:?}: the held view");
        // A longer append (a prompt's rows) gets no spare rows: the next step copies.
        let prompt = kv::append(rows(5), rows(kv::STEP_ROWS + 1));
        let before = buffer(&prompt);
        assert_ne!(buffer(&kv::append(prompt, rows(1))), before);
    }
    assert!(!kv::serves(
        &Tensor::<4>::zeros([1, 1, 1, 8], &device).autodiff(),
        &Tensor::<4>::zeros([1, 1, 1, 8], &device).autodiff()
    ));
}

#[test]
fn a_truncated_cache_appends_over_its_dropped_rows() {
    let device = Device::flex();
    let rows = |t: usize| Tensor::<4>::random([3, 3, t, 16], Distribution::Default, &device);
    let mut cache = LayerKv {
        k: rows(10),
        v: rows(10),
    };
    cache.append(LayerKv {
        k: rows(2),
        v: rows(2),
    });
    let (k10, v10) = (
        cache.k.clone().narrow(2, 0, 11),
        cache.v.clone().narrow(2, 0, 11),
    );
    let (k10, v10) = (values(k10), values(v10));
    cache.truncate(11);
    let (k, v) = (rows(1), rows(1));
    let before = buffer(&cache.k);
    cache.append(LayerKv {
        k: k.clone(),
        v: v.clone(),
    });
    assert_eq!(buffer(&cache.k), before, "written in place");
    let want = |kept: Vec<f32>, new: Tensor<4>| {
        let kept = Tensor::<4>::from_data(TensorData::new(kept, [3, 3, 11, 16]), &device);
        values(Tensor::cat(vec![kept, new], 2))
    };
    assert_eq!(values(cache.k), want(k10, k));
    assert_eq!(values(cache.v), want(v10, v));
}

#[test]
fn the_kernel_reads_a_cache_where_it_lies() {
    let device = Device::flex();
    let normal = Distribution::Normal(0.0, 1.0);
    let (b, h, hkv, d) = (2, 9, 3, 64);
    let rows = |t: usize| Tensor::<4>::random([b, hkv, t, d], normal, &device);
    // A cache of 300 positions in a buffer with spare rows (and a copy laid out densely).
    let (k, v) = (
        kv::append(rows(299), rows(1)),
        kv::append(rows(299), rows(1)),
    );
    let dense = |x: &Tensor<4>| Tensor::<4>::from_data(x.to_data(), &device);
    let (k_dense, v_dense) = (dense(&k), dense(&v));
    assert_ne!(buffer(&k), buffer(&k_dense));
    for t in [1, 70] {
        let q = Tensor::<4>::random([b, h, t, d], normal, &device);
        let got = attention::attention(q.clone(), k.clone(), v.clone());
        let want = attention::attention(q, k_dense.clone(), v_dense.clone());
        // The same kernel on the same numbers: equal, bit for bit.
        assert_eq!(values(got), values(want), "{t} rows");
    }
}

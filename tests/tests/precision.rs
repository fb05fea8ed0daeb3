//! Reduced precision: the tiny model and FocusLLM with the device's float type set to f16 or
//! bf16, against the f32 references of `parity_tiny` and `focus_fidelity` (transformers and the
//! independent Python reference). Logits must stay within a per-dtype bound, and the greedy
//! token must equal the reference's wherever the reference's top-two margin exceeds twice
//! that bound (below it, rounding may legitimately swap a near-tie).
//!
//! A device's float type can be set once per process, so each dtype runs in a child process
//! of this test binary (`child`, ignored on its own).

use std::process::Command;

use burn::tensor::{DType, FloatDType};
use focus_core::Session;
use focus_model::{Rows, load, model::ids_tensor};
use focus_tests::{F16_FOCUS, F16_PLAIN, Reference, device, fixture, max_abs_diff, top2, values};

use crate::focus_fidelity::{BOS, settings, tiny_focus};

/// Largest logit errors allowed, per dtype: (plain decoder, FocusLLM).
fn bounds(dtype: DType) -> (f32, f32) {
    match dtype {
        // Observed on flex: plain 2.7e-2, FocusLLM 4.8e-2 (greedy compared on 66/82 and
        // 20/30 rows, all equal).
        DType::F16 => (F16_PLAIN, F16_FOCUS),
        // Observed on flex: plain 0.165, FocusLLM 0.176; bf16 keeps 8 bits of mantissa
        // (greedy compared on 15/82 and 6/30 rows, all equal).
        DType::BF16 => (0.3, 0.3),
        other => panic!("no bound for {other:?}"),
    }
}

fn run_child(dtype: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args(["precision::child", "--exact", "--ignored", "--nocapture"])
        .env("FOCUS_PRECISION", dtype)
        .output()
        .expect("run the child test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{dtype} child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "{dtype} child did not run:\n{text}"
    );
}

#[test]
fn f16_logits_and_greedy_tokens() {
    run_child("f16");
}

#[test]
fn bf16_logits_and_greedy_tokens() {
    run_child("bf16");
}

/// Largest error and how many greedy tokens were compared, of how many rows.
#[derive(Default)]
struct Tally {
    err: f32,
    greedy: usize,
    rows: usize,
}

impl Tally {
    /// Checks one row of logits against its reference.
    fn check(&mut self, got: &[f32], want: &[f32], bound: f32, what: &str) {
        let err = max_abs_diff(got, want);
        assert!(err < bound, "{what}: max logit error {err} (bound {bound})");
        let (top, margin) = top2(want);
        if margin > 2.0 * bound {
            assert_eq!(
                top2(got).0,
                top,
                "{what}: greedy token (reference margin {margin})"
            );
            self.greedy += 1;
        }
        self.err = self.err.max(err);
        self.rows += 1;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (e, g, r) = (self.err, self.greedy, self.rows);
        write!(
            f,
            "max logit error {e:.2e}, greedy token compared on {g} of {r} rows"
        )
    }
}

#[test]
#[ignore = "run by the dtype tests above, in a process of its own"]
fn child() {
    let (float, dtype) = match std::env::var("FOCUS_PRECISION").as_deref() {
        Ok("f16") => (FloatDType::F16, DType::F16),
        Ok("bf16") => (FloatDType::BF16, DType::BF16),
        other => panic!("FOCUS_PRECISION must be f16 or bf16, not {other:?}"),
    };
    let mut dev = device();
    if !dev.supports_dtype(dtype) {
        println!("{dtype:?} is not supported on this device: skipped");
        return;
    }
    dev.configure(float)
        .expect("configure before any tensor exists");
    let (plain_bound, focus_bound) = bounds(dtype);

    let r = Reference::open("tiny-llama-ref.safetensors");
    let model = load(&fixture("tiny-llama"), &dev).expect("loads").model;
    let t = r.shape("input_ids")[1];
    let ids = ids_tensor(&r.ids("input_ids"), &dev).reshape([2, t]);
    let got = values(model.logits(model.forward(ids, 0, None, Rows::Plain).hidden));
    let want = r.f32("logits");
    let vocab = model.config().vocab_size;
    let mut plain = Tally::default();
    for (i, (g, w)) in got.chunks(vocab).zip(want.chunks(vocab)).enumerate() {
        plain.check(g, w, plain_bound, &format!("plain row {i}"));
    }
    drop(model);

    let r = Reference::open("tiny-focus-ref.safetensors");
    let model = tiny_focus();
    let ids = r.ids("input_ids");
    let mut focus = Tally::default();
    for (i, (cfg, _)) in settings().into_iter().enumerate() {
        let want = r.f32(&format!("logits.{i}"));
        let greedy = r.ids(&format!("greedy.{i}"));
        let (mut s, mut logits) = Session::prefill(&model, &cfg, BOS, &ids, |_, _| {}).unwrap();
        for (t, &token) in greedy.iter().enumerate() {
            let got = values(logits);
            let w = &want[t * vocab..(t + 1) * vocab];
            focus.check(&got, w, focus_bound, &format!("setting {i} step {t}"));
            logits = s.step(token);
        }
    }
    println!("{dtype:?}: plain decoder {plain}; FocusLLM {focus}");
}

/// Largest FocusLLM logit errors allowed with the chunk caches kept in `dtype` and an f32
/// computation.
fn compact_bound(dtype: DType) -> f32 {
    match dtype {
        // Observed on flex: 2.0e-3 (f16 keeps 11 bits of mantissa; the f16 computation's
        // error above is 4.8e-2).
        DType::F16 => 5e-3,
        // Observed on flex: 1.25e-2 (8 bits; the bf16 computation's is 0.176).
        DType::BF16 => 3e-2,
        other => panic!("no bound for {other:?}"),
    }
}

/// FocusLLM with its chunk caches kept in f16 or bf16 (`--chunk-cache-dtype`) and the
/// computation in f32, against the f32 reference: the caches round the chunks' keys and
/// values only, so the error stays below that of a computation in the same type.
#[test]
fn compact_chunk_caches_against_the_reference() {
    let r = Reference::open("tiny-focus-ref.safetensors");
    let ids = r.ids("input_ids");
    let vocab = tiny_focus().config().vocab_size;
    for dtype in [DType::F16, DType::BF16] {
        let model = tiny_focus().with_chunk_cache_dtype(dtype);
        let bound = compact_bound(dtype);
        let mut focus = Tally::default();
        for (i, (cfg, _)) in settings().into_iter().enumerate() {
            let want = r.f32(&format!("logits.{i}"));
            let greedy = r.ids(&format!("greedy.{i}"));
            let (mut s, mut logits) = Session::prefill(&model, &cfg, BOS, &ids, |_, _| {}).unwrap();
            let caches = s.chunk_caches();
            assert!(
                caches
                    .iter()
                    .all(|c| c.iter().all(|l| l.k.dtype() == dtype))
            );
            for (t, &token) in greedy.iter().enumerate() {
                let got = values(logits);
                let w = &want[t * vocab..(t + 1) * vocab];
                focus.check(&got, w, bound, &format!("{dtype:?} setting {i} step {t}"));
                logits = s.step(token);
            }
            // Decoding steps append to the caches in their type.
            let caches = s.chunk_caches();
            assert!(
                caches
                    .iter()
                    .all(|c| c.iter().all(|l| l.v.dtype() == dtype))
            );
        }
        println!("chunk caches in {dtype:?}: FocusLLM {focus}");
    }
}

//! FocusLLM against the independent Python reference (`tests/scripts/focus_reference.py`):
//! a tiny seeded model whose candidate projections differ from the base ones, several
//! (W, S, p) settings, prefill logits and six teacher-forced decode steps. Plus invariants
//! that need no fixture.

use focus_core::{FocusConfig, PromptConfig, Session};
use focus_model::{LlamaForCausalLM, Rows, WeightSettings, load, model::ids_tensor};
use focus_tests::{
    F16_FOCUS, F16_SHARE, Reference, device, f32_bound, fixture, max_abs, max_abs_diff,
    reduced_f32, top2, values,
};

pub(crate) fn tiny_focus() -> LlamaForCausalLM {
    load(&fixture("tiny-llama"), &device())
        .unwrap()
        .model
        .load_candidate_projections(&fixture("tiny-focus-candidates.safetensors"))
        .expect("candidate projections load")
}

pub(crate) fn settings() -> Vec<(FocusConfig, usize)> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-focus-ref.json")).unwrap())
            .unwrap();
    meta.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let g = |k: &str| s[k].as_u64().unwrap() as usize;
            let cfg = FocusConfig {
                prompt: PromptConfig {
                    cap: g("prompt_cap"),
                    separator: None,
                },
                ..FocusConfig::new(g("local_window"), g("chunk_len"))
            };
            (cfg, g("chunks"))
        })
        .collect()
}

pub(crate) const BOS: u32 = 256;

#[test]
fn logits_and_greedy_tokens_match_the_reference() {
    let r = Reference::open("tiny-focus-ref.safetensors");
    let model = tiny_focus();
    let ids = r.ids("input_ids");
    let vocab = model.config().vocab_size;
    for (i, (cfg, chunks)) in settings().into_iter().enumerate() {
        let expected = r.f32(&format!("logits.{i}"));
        let greedy = r.ids(&format!("greedy.{i}"));
        let (mut s, mut logits) = Session::prefill(&model, &cfg, BOS, &ids, |_, _| {}).unwrap();
        assert_eq!(
            s.plan().unwrap().num_chunks(),
            chunks,
            "setting {i}: chunk count"
        );
        for (t, &token) in greedy.iter().enumerate() {
            let got = values(logits.clone());
            let err = max_abs_diff(&got, &expected[t * vocab..(t + 1) * vocab]);
            // f32 throughout: observed max error 8.7e-6 over all settings and steps.
            let bound = f32_bound(1e-4, F16_FOCUS);
            assert!(
                err < bound,
                "setting {i} ({cfg:?}) step {t}: max logit error {err}"
            );
            // Where f32 keeps fewer bits, a near-tie may swap (precision.rs).
            let (_, margin) = top2(&expected[t * vocab..(t + 1) * vocab]);
            if !reduced_f32() || margin > 2.0 * bound {
                assert_eq!(
                    focus_core::sample::argmax(&got),
                    token,
                    "setting {i} step {t}: greedy token"
                );
            }
            logits = s.step(token);
        }
        let err = max_abs_diff(&values(logits), &expected[greedy.len() * vocab..]);
        assert!(
            err < f32_bound(1e-4, F16_FOCUS),
            "setting {i}: last step max logit error {err}"
        );
    }
}

#[test]
fn batched_and_one_by_one_decoding_agree() {
    let r = Reference::open("tiny-focus-ref.safetensors");
    let model = tiny_focus();
    let ids = r.ids("input_ids");
    let run = |max_batch: usize| {
        let cfg = FocusConfig::new(24, 16).with_max_batch(max_batch);
        let (mut s, l0) = Session::prefill(&model, &cfg, BOS, &ids, |_, _| {}).unwrap();
        let mut out = values(l0);
        for tok in [3, 14, 15] {
            out.extend(values(s.step(tok)));
        }
        out
    };
    let one = run(1);
    let all = run(64);
    let err = max_abs_diff(&one, &all);
    // Same arithmetic, different batch shapes: observed 0 (on a GPU the shapes may choose
    // other kernels).
    assert!(
        err < f32_bound(1e-5, F16_FOCUS),
        "batched vs one-by-one: max error {err}"
    );
}

#[test]
fn chunk_caches_equal_a_fresh_forward_after_each_step() {
    let r = Reference::open("tiny-focus-ref.safetensors");
    let model = tiny_focus();
    let ids = r.ids("input_ids");
    let cfg = FocusConfig::new(48, 20).with_max_batch(4);
    let (mut s, _) = Session::prefill(&model, &cfg, BOS, &ids, |_, _| {}).unwrap();
    let plan = s.plan().unwrap().clone();
    let generated = [5u32, 77, 123];
    for t in 0..=generated.len() {
        if t > 0 {
            s.step(generated[t - 1]);
        }
        let mut j = 0;
        for cache in s.chunk_caches() {
            for b in 0..cache[0].k.dims()[0] {
                // chunk ‖ BOS ‖ prompt ‖ g_1..g_{t-1}, all through the base projections.
                let mut row = plan.chunk_input(&ids, j);
                row.extend(&generated[..t]);
                row.pop();
                let fresh = model.forward(ids_tensor(&row, &model.device()), 0, None, Rows::Plain);
                for (layer, (c, f)) in cache.iter().zip(&fresh.new_kv).enumerate() {
                    let ck = values(c.k.clone().narrow(0, b, 1));
                    let cv = values(c.v.clone().narrow(0, b, 1));
                    let (fk, fv) = (values(f.k_rot.clone()), values(f.v.clone()));
                    let ek = max_abs_diff(&ck, &fk);
                    let ev = max_abs_diff(&cv, &fv);
                    // Observed at most 3.1e-6 (keys) and 2.9e-6 (values).
                    let (bk, bv) = (
                        f32_bound(1e-4, F16_SHARE * max_abs(&fk)),
                        f32_bound(1e-4, F16_SHARE * max_abs(&fv)),
                    );
                    assert!(
                        ek < bk && ev < bv,
                        "chunk {j} layer {layer} step {t}: k {ek} v {ev}"
                    );
                }
                j += 1;
            }
        }
        assert_eq!(j, plan.num_chunks());
    }
}

#[test]
fn input_within_the_window_is_the_plain_decoder() {
    let model = tiny_focus();
    let ids: Vec<u32> = std::iter::once(BOS)
        .chain((0..40).map(|i| (i * 7 % 256) as u32))
        .collect();
    let (mut s, logits) =
        Session::prefill(&model, &FocusConfig::new(41, 8), BOS, &ids, |_, _| {}).unwrap();
    assert!(!s.uses_memory());
    let (plain, mut cache) = model.prefill(&ids);
    assert_eq!(values(logits), values(plain));
    assert_eq!(values(s.step(9)), values(model.step(&mut cache, 9)));
}

#[test]
fn candidate_weights_round_trip_and_bad_files_are_errors() {
    let model = tiny_focus();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cand.safetensors");
    model
        .save_candidate_projections(&path, WeightSettings::default())
        .unwrap();
    let reloaded = load(&fixture("tiny-llama"), &device())
        .unwrap()
        .model
        .load_candidate_projections(&path)
        .unwrap();
    for (a, b) in model.model.layers.iter().zip(&reloaded.model.layers) {
        let (a, b) = (
            a.self_attn.candidate().unwrap(),
            b.self_attn.candidate().unwrap(),
        );
        for (x, y) in a.iter().zip(b) {
            assert_eq!(values(x.weight.val()), values(y.weight.val()));
        }
    }
    // Saved with the permissions of any new file (burn-store alone writes owner-only files).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(mode(&path) & 0o777, mode(&plain) & 0o777);
    }
    // The saved file uses the reference layout: [out, in] under the reference keys.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 12);
    assert_eq!(
        st.tensor("model.layers.2.self_attn.beacon_o_proj.weight")
            .unwrap()
            .shape(),
        &[64, 64]
    );
    assert_eq!(
        st.tensor("model.layers.0.self_attn.beacon_k_proj.weight")
            .unwrap()
            .shape(),
        &[32, 64]
    );

    // A file from a deeper model: the extra layer is named.
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec(), v.shape().to_vec()))
        .collect();
    let q0 = tensors
        .iter()
        .find(|t| t.0 == "model.layers.0.self_attn.beacon_q_proj.weight")
        .unwrap()
        .clone();
    tensors.push((
        "model.layers.3.self_attn.beacon_q_proj.weight".into(),
        q0.1,
        q0.2,
    ));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let bad = dir.path().join("bad.safetensors");
    safetensors::serialize_to_file(views, None, &bad).unwrap();
    let err = load(&fixture("tiny-llama"), &device())
        .unwrap()
        .model
        .load_candidate_projections(&bad)
        .unwrap_err();
    assert!(err.to_string().contains("layers.3"), "{err}");
    assert!(
        matches!(&err, focus_model::Error::Weights(m)
            if m.unused == ["model.layers.3.self_attn.beacon_q_proj.weight"] && m.missing.is_empty()),
        "{err:?}"
    );
    // A missing file.
    assert!(
        load(&fixture("tiny-llama"), &device())
            .unwrap()
            .model
            .load_candidate_projections(&dir.path().join("none"))
            .is_err()
    );
}

#[test]
fn weights_files_record_their_prompt_cap() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.safetensors");
    let without = dir.path().join("without.safetensors");
    let cap = WeightSettings {
        prompt_cap: Some(128),
    };
    let low_rank = tiny_focus().with_low_rank(2, 1).unwrap();
    low_rank.save_low_rank(&with, cap).unwrap();
    low_rank
        .save_low_rank(&without, WeightSettings::default())
        .unwrap();
    assert_eq!(WeightSettings::read(&with).unwrap(), cap);
    assert_eq!(
        WeightSettings::read(&without).unwrap(),
        WeightSettings::default()
    );
    // The full projections' format records it too, and the weights load as before.
    let full = dir.path().join("full.safetensors");
    tiny_focus().save_candidate_projections(&full, cap).unwrap();
    assert_eq!(WeightSettings::read(&full).unwrap(), cap);
    load(&fixture("tiny-llama"), &device())
        .unwrap()
        .model
        .load_focus_weights(&with)
        .unwrap();
    // A value that is not a positive number, a cut header and a missing file are errors
    // that name the file.
    let bytes = std::fs::read(&with).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    assert!(header.contains(r#""focus.prompt_cap":"128""#), "{header}");
    let bad = dir.path().join("bad.safetensors");
    let mut edited = bytes.clone();
    let at = 8 + header.find(r#""128""#).unwrap();
    edited[at + 1..at + 4].copy_from_slice(b"0x8");
    std::fs::write(&bad, &edited).unwrap();
    let err = WeightSettings::read(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.safetensors") && err.contains("focus.prompt_cap"),
        "{err}"
    );
    std::fs::write(&bad, &bytes[..8 + n / 2]).unwrap();
    let err = WeightSettings::read(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.safetensors"), "{err}");
    assert!(WeightSettings::read(&dir.path().join("none.safetensors")).is_err());
}

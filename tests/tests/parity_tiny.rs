//! The tiny seeded Llama (3 layers, 4 query / 2 KV heads, llama3 RoPE scaling) against the
//! hidden states, logits and greedy tokens transformers computed for the same weights
//! (`tests/scripts/make_fixtures.py tiny`).

use focus_model::{LlamaForCausalLM, Rows, load, model::ids_tensor};
use focus_tests::{
    F16_PLAIN, F16_SHARE, Reference, device, f32_bound, fixture, max_abs, max_abs_diff, values,
};

fn tiny() -> LlamaForCausalLM {
    load(&fixture("tiny-llama"), &device())
        .expect("tiny fixture loads")
        .model
}

fn input(r: &Reference) -> (Vec<u32>, usize) {
    let shape = r.shape("input_ids");
    (r.ids("input_ids"), shape[1])
}

#[test]
fn hidden_states_match_layer_by_layer() {
    let r = Reference::open("tiny-llama-ref.safetensors");
    let model = tiny();
    let (ids, t) = input(&r);
    let dev = model.device();
    let ids = ids_tensor(&ids, &dev).reshape([2, t]);
    let mut x = model.model.embed_tokens.forward(ids);
    let (cos, sin) = model.rope().tables(0, t, &dev);
    let n = model.model.layers.len();
    for (i, layer) in model.model.layers.iter().enumerate() {
        let expected = r.f32(&format!("hidden.{i}"));
        let got = values(x.clone());
        let err = max_abs_diff(&got, &expected);
        // Observed: 0 for the embeddings, at most 1.4e-5 over all layers (f32 on both sides).
        assert!(
            err < f32_bound(2e-5, F16_SHARE) * max_abs(&expected).max(1.0),
            "input of layer {i}: max error {err}"
        );
        x = layer.forward(x, &cos, &sin, None, Rows::Plain).0;
    }
    let expected = r.f32(&format!("hidden.{n}"));
    let err = max_abs_diff(&values(model.model.norm.forward(x)), &expected);
    assert!(
        err < f32_bound(2e-5, F16_SHARE) * max_abs(&expected).max(1.0),
        "final norm: max error {err}"
    );
}

#[test]
fn logits_match() {
    let r = Reference::open("tiny-llama-ref.safetensors");
    let model = tiny();
    let (ids, t) = input(&r);
    let f = model.forward(
        ids_tensor(&ids, &model.device()).reshape([2, t]),
        0,
        None,
        Rows::Plain,
    );
    let got = values(model.logits(f.hidden));
    let expected = r.f32("logits");
    let err = max_abs_diff(&got, &expected);
    // f32 against f32: observed max error 7.4e-6.
    assert!(err < f32_bound(1e-4, F16_PLAIN), "max logit error {err}");
}

#[test]
fn reading_the_last_rows_only_matches() {
    let r = Reference::open("tiny-llama-ref.safetensors");
    let model = tiny();
    let (ids, t) = input(&r);
    let dev = model.device();
    let ids = || ids_tensor(&ids, &dev).reshape([2, t]);
    let vocab = model.config().vocab_size;
    let expected = r.f32("logits");
    let full = model.forward(ids(), 0, None, Rows::Plain);
    for n in [1, 3] {
        let f = model.forward_last(ids(), 0, None, Rows::Plain, n);
        assert_eq!(f.hidden.dims(), [2, n, model.config().hidden_size]);
        let got = values(model.logits(f.hidden));
        // Against transformers' logits of the same rows: observed 5.1e-6 for both (f32 on
        // both sides; 7.4e-6 over every row of the full call).
        let want: Vec<f32> = (0..2)
            .flat_map(|b| &expected[(b * t + t - n) * vocab..(b + 1) * t * vocab])
            .copied()
            .collect();
        let err = max_abs_diff(&got, &want);
        eprintln!("last {n} rows: max logit error {err}");
        assert!(
            err < f32_bound(1e-4, F16_PLAIN),
            "last {n} rows: max logit error {err}"
        );
        // The keys and values of every row are those of the full call, bit for bit: the
        // last layer computes them from the same rows as before.
        for (a, b) in f.new_kv.iter().zip(&full.new_kv) {
            assert_eq!(values(a.k_rot.clone()), values(b.k_rot.clone()));
            assert_eq!(values(a.v.clone()), values(b.v.clone()));
        }
    }
    let kv = model.keys_values(ids(), 0, None, Rows::Plain);
    assert_eq!(kv.len(), full.new_kv.len());
    for (a, b) in kv.iter().zip(&full.new_kv) {
        assert_eq!(values(a.k_rot.clone()), values(b.k_rot.clone()));
        assert_eq!(values(a.v.clone()), values(b.v.clone()));
    }
}

#[test]
fn bf16_sharded_checkpoint_matches() {
    let r = Reference::open("tiny-llama-ref.safetensors");
    let model = load(&fixture("tiny-llama-bf16-sharded"), &device())
        .expect("sharded bf16 loads")
        .model;
    let (ids, t) = input(&r);
    let f = model.forward(
        ids_tensor(&ids, &model.device()).reshape([2, t]),
        0,
        None,
        Rows::Plain,
    );
    let err = max_abs_diff(&values(model.logits(f.hidden)), &r.f32("logits_bf16"));
    // bf16 weights cast to f32 on both sides, so this is f32 arithmetic again: observed 8.3e-6.
    assert!(err < f32_bound(1e-4, F16_PLAIN), "max logit error {err}");
}

#[test]
fn greedy_tokens_match() {
    let r = Reference::open("tiny-llama-ref.safetensors");
    let model = tiny();
    let expected = r.ids("greedy");
    let (prompt, new) = expected.split_at(12);
    assert_eq!(model.generate_greedy(prompt, new.len()), new);
}

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    let r = Reference::open("tiny-llama-ref.safetensors");
    let model = tiny();
    let (ids, _) = input(&r);
    let ids = &ids[..30];
    let (_, mut cache) = model.prefill(&ids[..10]);
    let dev = model.device();
    for i in 10..ids.len() {
        let step = values(model.step(&mut cache, ids[i]));
        let full = model.forward(ids_tensor(&ids[..=i], &dev), 0, None, Rows::Plain);
        let full = values(model.last_logits(full.hidden));
        let err = max_abs_diff(&step, &full);
        // Same arithmetic in a different order: observed at most 4.8e-6.
        assert!(
            err < f32_bound(1e-4, F16_PLAIN),
            "position {i}: cached vs full max error {err}"
        );
    }
    assert_eq!(cache[0].len(), ids.len());
}

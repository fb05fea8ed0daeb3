//! The real default model, SmolLM2-135M-Instruct (GGUF, Q4_1), against transformers loading
//! the same file through its own GGUF integration (`tests/scripts/make_fixtures.py smollm2`).

use std::sync::OnceLock;

use focus_model::{Loaded, load};
use focus_tests::{Reference, asset, device, max_abs, max_abs_diff, smollm2_path, values};

/// The default model, loaded once; `None` (the test is skipped) when not fetched.
fn smollm2() -> Option<&'static Loaded> {
    static MODEL: OnceLock<Option<Loaded>> = OnceLock::new();
    MODEL
        .get_or_init(|| smollm2_path().map(|p| load(&p, &device()).expect("SmolLM2 GGUF loads")))
        .as_ref()
}

fn reference() -> (Reference, serde_json::Value) {
    let meta = std::fs::read_to_string(focus_tests::fixture("smollm2-ref.json")).unwrap();
    (
        Reference::open("smollm2-ref.safetensors"),
        serde_json::from_str(&meta).unwrap(),
    )
}

#[test]
fn prompt_ids_and_next_token_logits_match() {
    let (r, meta) = reference();
    let Some(m) = smollm2() else { return };
    for (i, prompt) in meta["prompts"].as_array().unwrap().iter().enumerate() {
        let ids = m.tokenizer.encode(prompt.as_str().unwrap(), false).unwrap();
        assert_eq!(ids, r.ids(&format!("ids.{i}")), "token ids of prompt {i}");
        let (logits, _) = m.model.prefill(&ids);
        let got = values(logits);
        let expected = r.f32(&format!("logits.{i}"));
        let err = max_abs_diff(&got, &expected);
        // 30 layers in f32 with different summation orders: observed max error 5.1e-5.
        assert!(
            err < 5e-4,
            "prompt {i}: max logit error {err} (largest logit {})",
            max_abs(&expected)
        );
    }
}

#[test]
fn greedy_continuations_match() {
    let (r, meta) = reference();
    let Some(m) = smollm2() else { return };
    for i in 0..meta["prompts"].as_array().unwrap().len() {
        let ids = r.ids(&format!("ids.{i}"));
        let expected = r.ids(&format!("greedy.{i}"));
        assert_eq!(
            m.model.generate_greedy(&ids, expected.len()),
            expected,
            "prompt {i}"
        );
    }
}

#[test]
fn tokenizer_round_trips_books_and_matches_hf_ids() {
    let (_, meta) = reference();
    let Some(m) = smollm2() else { return };
    let tok = &m.tokenizer;
    for (book, expected) in meta["books"].as_object().unwrap() {
        let text = std::fs::read_to_string(asset(&format!("books/{book}.txt"))).unwrap();
        let ids = tok.encode(&text, false).unwrap();
        assert_eq!(
            ids.len() as u64,
            expected["tokens"].as_u64().unwrap(),
            "{book}: token count"
        );
        let first: Vec<u32> = expected["first"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(&ids[..first.len()], &first[..], "{book}: first ids");
        assert_eq!(
            fnv1a64_u32le(&ids),
            expected["fnv1a64_u32le"].as_str().unwrap(),
            "{book}: ids digest"
        );
        assert_eq!(tok.decode(&ids).unwrap(), text, "{book}: round trip");
    }
}

/// FNV-1a (64-bit) of ids as little-endian u32; the fixture script computes the same.
fn fnv1a64_u32le(ids: &[u32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ids.iter().flat_map(|i| i.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

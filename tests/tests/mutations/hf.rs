//! An HF model directory's `config.json` and `tokenizer.json`, mutated: structured edits of
//! every numeric field (zero, one, negative, huge, fractional, the wrong JSON type, missing),
//! bit flips and truncations of the text. Each case loads to an error or to a model that
//! runs (finite logits for a short input), never panics, and never allocates more at once
//! than a few times the weight file.

use std::path::Path;

use focus_model::load;
use focus_tests::{device, fixture};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::Tally;
use crate::largest_allocation;

/// The numeric fields of the tiny fixture's `config.json`, as JSON pointers.
const FIELDS: &[&str] = &[
    "/vocab_size",
    "/hidden_size",
    "/intermediate_size",
    "/num_hidden_layers",
    "/num_attention_heads",
    "/num_key_value_heads",
    "/head_dim",
    "/max_position_embeddings",
    "/rms_norm_eps",
    "/bos_token_id",
    "/eos_token_id",
    "/rope_parameters/rope_theta",
    "/rope_parameters/factor",
    "/rope_parameters/low_freq_factor",
    "/rope_parameters/high_freq_factor",
    "/rope_parameters/original_max_position_embeddings",
];

fn edge(rng: &mut StdRng) -> Value {
    match rng.random_range(0..14) {
        0 => json!(0),
        1 => json!(1),
        2 => json!(-1),
        3 => json!(2),
        4 => json!(1u64 << 31),
        5 => json!(1u64 << 32),
        6 => json!(1u64 << 53),
        7 => json!(u64::MAX),
        8 => json!(1e308),
        9 => json!(0.5),
        10 => json!("8"),
        11 => Value::Null,
        12 => json!([]),
        _ => json!(rng.random_range(0..1024)),
    }
}

/// Mutation `case` of the config text `base`.
fn mutate_config(base: &str, case: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(case);
    match case % 5 {
        // One, two or three fields set to edge values (or removed).
        0..=2 => {
            let mut v: Value = serde_json::from_str(base).unwrap();
            for _ in 0..=(case % 3) {
                let field = FIELDS[rng.random_range(0..FIELDS.len())];
                if rng.random_range(0..8) == 0 {
                    let (parent, key) = field.rsplit_once('/').unwrap();
                    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
                        m.remove(key);
                    }
                } else if let Some(slot) = v.pointer_mut(field) {
                    *slot = edge(&mut rng);
                }
            }
            serde_json::to_vec(&v).unwrap()
        }
        // Bit flips in the text.
        3 => {
            let mut b = base.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..=4) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            b
        }
        // Truncation.
        _ => base.as_bytes()[..rng.random_range(0..base.len())].to_vec(),
    }
}

/// Loads the directory and, when it loads, runs four tokens through it.
fn load_and_run(dir: &Path) -> Result<(), String> {
    let m = load(dir, &device()).map_err(|e| e.to_string())?.model;
    let vocab = m.config().vocab_size as u32;
    let ids: Vec<u32> = [1, 2, 3, 4].map(|i| i % vocab).to_vec();
    let (logits, _) = m.prefill(&ids);
    let v = logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(v.len(), vocab as usize);
    assert!(v.iter().all(|x| x.is_finite()), "non-finite logits");
    Ok(())
}

/// A copy of the tiny fixture directory.
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-llama").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn config_json_survives_mutations() {
    let dir = fixture_copy();
    let base = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    load_and_run(dir.path()).unwrap();
    let weights = std::fs::metadata(dir.path().join("model.safetensors"))
        .unwrap()
        .len() as usize;
    let mut tally = Tally::default();
    let mut largest_seen = 0;
    let mut over = Vec::new();
    const CASES: u64 = 10_000;
    for case in 0..CASES {
        std::fs::write(dir.path().join("config.json"), mutate_config(&base, case)).unwrap();
        let ((), largest) = largest_allocation(|| tally.run(case, || load_and_run(dir.path())));
        largest_seen = largest_seen.max(largest);
        // A model that loads holds its weights in memory, the file itself is mapped: no
        // allocation may exceed the weight file's size, twice for a converted copy. Observed
        // at most 67,600 bytes (the largest tensor, the 260 x 64 f32 embedding, 66,560).
        if largest > 2 * weights {
            over.push((case, largest));
        }
    }
    tally.assert_no_panic();
    assert!(
        over.is_empty(),
        "cases allocating too much: {:?}",
        &over[..over.len().min(10)]
    );
    eprintln!(
        "config.json mutations: {CASES} cases, {} errors, {} loaded and ran, largest allocation {largest_seen} bytes (weights {weights})",
        tally.errors, tally.loaded
    );
    assert!(tally.errors > CASES / 2 && tally.loaded > 0);
}

/// Mutation `case` of `tokenizer.json`: flips, truncations, and edits of the vocabulary and
/// the added tokens (ids far outside the vocabulary, wrong types, missing fields).
fn mutate_tokenizer(base: &str, case: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(case);
    match case % 4 {
        0 => {
            let mut b = base.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..=4) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            b
        }
        1 => base.as_bytes()[..rng.random_range(0..base.len())].to_vec(),
        _ => {
            let mut v: Value = serde_json::from_str(base).unwrap();
            for _ in 0..rng.random_range(1..=3) {
                let slot = match rng.random_range(0..5) {
                    0 => {
                        let keys: Vec<String> = v["model"]["vocab"]
                            .as_object()
                            .unwrap()
                            .keys()
                            .cloned()
                            .collect();
                        let k = &keys[rng.random_range(0..keys.len())];
                        v.pointer_mut(&format!(
                            "/model/vocab/{}",
                            k.replace('~', "~0").replace('/', "~1")
                        ))
                    }
                    1 => v.pointer_mut(&format!("/added_tokens/{}/id", rng.random_range(0..4))),
                    2 => {
                        v.pointer_mut(&format!("/added_tokens/{}/content", rng.random_range(0..4)))
                    }
                    3 => v.pointer_mut("/model/merges"),
                    _ => v.pointer_mut("/model/type"),
                };
                if let Some(slot) = slot {
                    *slot = match rng.random_range(0..6) {
                        0 => json!(u32::MAX),
                        1 => json!(-1),
                        2 => json!(""),
                        3 => json!(["a b", "x"]),
                        4 => Value::Null,
                        _ => json!(rng.random_range(0..300)),
                    };
                }
            }
            serde_json::to_vec(&v).unwrap()
        }
    }
}

#[test]
fn tokenizer_json_survives_mutations() {
    use focus_model::Tokenizer;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let base = std::fs::read_to_string(fixture("tiny-llama").join("tokenizer.json")).unwrap();
    let text = "the cat in a hat 2048 </s> naïve ✓";
    let run = |path: &Path| -> Result<(), String> {
        let t = Tokenizer::from_file(path, 256, vec![257]).map_err(|e| e.to_string())?;
        let ids = t.encode(text, true).map_err(|e| e.to_string())?;
        t.decode(&ids).map_err(|e| e.to_string())?;
        Ok(())
    };
    std::fs::write(&path, &base).unwrap();
    run(&path).unwrap();
    let mut tally = Tally::default();
    const CASES: u64 = 10_000;
    for case in 0..CASES {
        std::fs::write(&path, mutate_tokenizer(&base, case)).unwrap();
        tally.run(case, || run(&path));
    }
    tally.assert_no_panic();
    eprintln!(
        "tokenizer.json mutations: {CASES} cases, {} errors, {} built and round-tripped",
        tally.errors, tally.loaded
    );
    assert!(tally.errors > CASES / 4 && tally.loaded > 0);
}

/// Regression cases the mutations found. `rms_norm_eps: 0` reached burn's `RmsNorm`, which
/// panics on it; a syntax error inside `tokenizer.json`'s `decoder` object made `tokenizers`
/// panic. A configuration claiming 2^40 layers is refused before anything is allocated.
#[test]
fn mutations_found_these() {
    let dir = fixture_copy();
    let base = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let edit = |field: &str, value: Value| {
        let mut v: Value = serde_json::from_str(&base).unwrap();
        *v.pointer_mut(field).unwrap() = value;
        std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
        load_and_run(dir.path()).unwrap_err()
    };
    let err = edit("/rms_norm_eps", json!(0));
    assert!(
        err.contains("rms_norm_eps 0 must be finite and positive"),
        "{err}"
    );
    let t0 = std::time::Instant::now();
    let (err, largest) = largest_allocation(|| edit("/num_hidden_layers", json!(1u64 << 40)));
    assert!(err.contains("parameters, more than"), "{err}");
    assert!(largest < 64 << 10, "{largest} bytes allocated");
    eprintln!("2^40 layers refused in {:?}", t0.elapsed());
    std::fs::write(dir.path().join("config.json"), &base).unwrap();
    let tok = std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap();
    let broken = tok.replacen("\"decoder\": {", "\"decoder\": {,", 1);
    assert_ne!(broken, tok, "the fixture has a decoder object");
    std::fs::write(dir.path().join("tokenizer.json"), broken).unwrap();
    let err = load_and_run(dir.path()).unwrap_err();
    assert!(err.contains("tokenizer.json"), "{err}");
}

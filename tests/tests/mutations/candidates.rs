//! The candidate-weights loader (`load_focus_weights`) on mutated full and low-rank files.

use focus_model::WeightSettings;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::Tally;

/// The candidate-weights loader (`load_focus_weights`) on mutated files of both formats (the
/// tiny model's full candidate projections and its rank-2 factors): bit flips, truncations,
/// and the header length set to edge values. Each case is an error or a loaded model, never
/// a panic (the recorded settings are read first, as a command does).
#[test]
fn candidate_weight_files_survive_mutations() {
    use focus_model::load;
    use focus_tests::{device, fixture};
    let base = load(&fixture("tiny-llama"), &device()).unwrap().model;
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.safetensors");
    let factors = dir.path().join("factors.safetensors");
    // Both files record a prompt cap, so the mutations reach the metadata's reader too.
    let settings = WeightSettings {
        prompt_cap: Some(128),
    };
    base.clone()
        .with_candidate_projections()
        .save_candidate_projections(&full, settings)
        .unwrap();
    base.clone()
        .with_low_rank(2, 1)
        .unwrap()
        .save_low_rank(&factors, settings)
        .unwrap();
    let path = dir.path().join("m.safetensors");
    let mut tally = Tally::default();
    const CASES: u64 = 10_000;
    for case in 0..CASES {
        let src = if case % 2 == 0 { &full } else { &factors };
        let mut b = std::fs::read(src).unwrap();
        let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let mut rng = StdRng::seed_from_u64(case);
        match case % 6 {
            // Flips in the JSON header (names, dtypes, shapes, offsets).
            0 | 1 => {
                for _ in 0..rng.random_range(1..=4) {
                    let i = rng.random_range(8..header);
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            // Flips anywhere.
            2 => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            // Truncation.
            3 | 4 => {
                let at = rng.random_range(0..b.len());
                b.truncate(at);
            }
            // The header length set to an edge value.
            _ => {
                let v: u64 = match rng.random_range(0..4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => b.len() as u64,
                    _ => rng.random_range(0..b.len() as u64 * 2),
                };
                b[..8].copy_from_slice(&v.to_le_bytes());
            }
        }
        std::fs::write(&path, &b).unwrap();
        let m = base.clone();
        // As a command reads the file: its settings, then its weights.
        tally.run(case, || {
            WeightSettings::read(&path).and_then(|_| m.load_focus_weights(&path))
        });
    }
    tally.assert_no_panic();
    let Tally { errors, loaded, .. } = tally;
    eprintln!("candidate-file mutations: {CASES} cases, {errors} errors, {loaded} loaded");
    assert!(errors > CASES / 2, "errors {errors}, loaded {loaded}");
}

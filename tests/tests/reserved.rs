//! The held-out haystack is recognised, and training refuses it (`focus_eval::reserved`).

use focus_eval::reserved::{HELD_OUT, check_training_text, fingerprints, held_out_match};
use focus_tests::asset_path;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).expect("a UTF-8 asset")
}

/// The shipped fingerprints are those of the fetched texts, a copy, an excerpt and a
/// concatenation of a held-out text are refused, and the project's training texts are not.
#[test]
fn held_out_texts_are_recognised_and_training_texts_are_not() {
    for h in HELD_OUT {
        let Some(path) = asset_path(h.name) else {
            return;
        };
        let text = read(&path);
        assert_eq!(
            fingerprints(&text),
            h.fingerprints(),
            "{}: the shipped fingerprints are stale",
            h.name
        );
        assert!(check_training_text(h.name, &text).is_err());
        // Three paragraphs from the middle, rewrapped and joined with other text.
        let mid = text.len() / 2;
        let start = text[..mid].rfind("\n\n").unwrap_or(0);
        let excerpt: String = text[start..]
            .split("\n\n")
            .take(4)
            .collect::<Vec<_>>()
            .join(" ")
            .replace('\n', " ");
        let joined = format!("Some other text about boats and rivers.\n\n{excerpt}");
        let err = check_training_text("joined.txt", &joined).unwrap_err();
        assert!(err.contains("joined.txt") && err.contains(h.name), "{err}");
        assert!(held_out_match(&joined).is_some());
    }
    let mut training = vec![];
    for b in [
        "books/lcet10.txt",
        "books/plrabn12.txt",
        "books/asyoulik.txt",
    ] {
        let Some(p) = asset_path(b) else { return };
        training.push(p);
    }
    let Some(essays) = asset_path("essays") else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(essays)
        .expect("the essays folder")
        .map(|e| e.expect("an entry").path())
        .collect();
    files.sort();
    training.extend(files);
    for p in &training {
        let text = read(p);
        assert_eq!(
            check_training_text(&p.display().to_string(), &text),
            Ok(()),
            "{}",
            p.display()
        );
        assert!(held_out_match(&text).is_none(), "{}", p.display());
    }
}

/// Training refuses the held-out book, by text and as a haystack, and under SmolLM2's
/// tokenizer every retrieval answer, its full stop included, is supervised whole.
#[test]
fn training_refuses_held_out_text_and_supervises_whole_answers() {
    use focus_train::synth::{Haystack, fact};
    let Some(model) = focus_tests::smollm2_path() else {
        return;
    };
    let tok = focus_model::load(&model, &focus_tests::device())
        .unwrap()
        .tokenizer;
    if let Some(alice) = asset_path("books/alice29.txt") {
        let texts = vec![("alice29.txt".to_string(), read(&alice))];
        let err = focus_train::data::pack(&tok, &texts, 600, 900, 0).unwrap_err();
        assert!(err.to_string().contains("holds out"), "{err}");
        assert!(Haystack::new(&tok, &texts).is_err());
        // As held-out sequences for the evaluation loss it is fine.
        assert!(focus_train::data::pack_held_out(&tok, &texts, 600, 900, 0).is_ok());
    }
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let most = (0..3000)
        .map(|i| {
            tok.encode(&fact(&mut rng, i % 2 == 0).answer, false)
                .unwrap()
                .len()
        })
        .max()
        .unwrap();
    assert!(
        most <= focus_train::train::MAX_ANSWER_TOKENS,
        "an answer of {most} tokens"
    );
}

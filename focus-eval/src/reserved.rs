//! What evaluation keeps for itself: the held-out haystack of the needle test and the
//! templates of the retrieval tests. Training calls [`check_training_text`] on every text it
//! reads, so none of these can become training data by accident.
//!
//! A held-out text is recognised by fingerprints of its wording, not by its file name:
//! every run of [`SHINGLE`] consecutive words (lower-cased ASCII letters and digits, all
//! else a word break) is hashed with 64-bit FNV-1a, and the hashes divisible by
//! [`SAMPLE`] are kept (a choice by value, so the same passages are sampled wherever the
//! text starts or however it is wrapped). A text that shares any sampled passage with a
//! held-out one is refused: a whole copy, an excerpt of a few paragraphs, or the text
//! joined with others. The shipped lists are checked against the texts themselves when the
//! assets are present, and no training text of the project hits them.

/// Words per fingerprinted passage.
pub const SHINGLE: usize = 10;
/// One passage in this many (by hash value) is kept as a fingerprint.
pub const SAMPLE: u64 = 64;

/// A text that evaluation holds out, and the sorted fingerprints of its wording.
#[derive(Debug, Clone, Copy)]
pub struct HeldOut {
    /// The file it comes as in `.assets/` (as `scripts/fetch-assets.sh` lays it out).
    pub name: &'static str,
    /// What evaluation uses it for.
    pub role: &'static str,
    fingerprints: &'static str,
}

impl HeldOut {
    /// The fingerprints, as shipped (sorted).
    pub fn fingerprints(&self) -> Vec<u64> {
        self.fingerprints
            .lines()
            .map(|l| u64::from_str_radix(l.trim(), 16).expect("shipped fingerprints are hex"))
            .collect()
    }

    /// How many of its fingerprints are among `own` (a text's, sorted).
    fn shared(&self, own: &[u64]) -> usize {
        self.fingerprints()
            .iter()
            .filter(|f| own.binary_search(f).is_ok())
            .count()
    }
}

/// The held-out texts.
pub const HELD_OUT: &[HeldOut] = &[HeldOut {
    name: "books/alice29.txt",
    role: "the haystack of `focus niah` and the held-out book of `focus ppl`",
    fingerprints: include_str!("reserved/alice29.fingerprints"),
}];

/// Phrases of the evaluation templates (lower case): the passkey sentences of the
/// reference, the needle of `focus niah`, and RULER's "special magic number" needles and
/// questions. Training text that contains one is refused, and the training documents made
/// by `focus-train` are tested never to contain one.
pub const TEMPLATE_PHRASES: &[&str] = &[
    "pass key",
    "passkey",
    "the grass is green. the sky is blue.",
    "there and back again",
    "important info hidden inside",
    "magic number",
    "special magic",
];

/// 64-bit FNV-1a.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The words of `text`: lower-cased runs of ASCII letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The sampled fingerprints of `text`, sorted and without repeats.
pub fn fingerprints(text: &str) -> Vec<u64> {
    let w = words(text);
    let mut out: Vec<u64> = w
        .windows(SHINGLE)
        .map(|s| fnv1a(s.join(" ").into_bytes()))
        .filter(|h| h % SAMPLE == 0)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Why `text` (named `name` in the message) may not be trained on, if it may not: it
/// shares wording with a held-out text, or it contains an evaluation template.
pub fn check_training_text(name: &str, text: &str) -> Result<(), String> {
    let own = fingerprints(text);
    for h in HELD_OUT {
        let shared = h.shared(&own);
        if shared > 0 {
            return Err(format!(
                "{name} shares {shared} passages with {}, which evaluation holds out ({}); \
                 it cannot be training data",
                h.name, h.role
            ));
        }
    }
    let lower = text.to_lowercase();
    if let Some(p) = TEMPLATE_PHRASES.iter().find(|p| lower.contains(*p)) {
        return Err(format!(
            "{name} contains {p:?}, a phrase of the evaluation templates; it cannot be \
             training data"
        ));
    }
    Ok(())
}

/// The held-out text whose wording `text` shares, if any (for reports: a needle test on
/// text that is not held out measures retrieval from training text).
pub fn held_out_match(text: &str) -> Option<&'static HeldOut> {
    let own = fingerprints(text);
    HELD_OUT.iter().find(|h| h.shared(&own) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_case_punctuation_and_wrapping() {
        let a = "Alice was beginning to get very tired of sitting by her sister on the bank, \
                 and of having nothing to do: once or twice she had peeped into the book.";
        let b = a.to_uppercase().replace(' ', "\n  ").replace(',', " ;");
        assert_eq!(fingerprints(a), fingerprints(&b));
        assert!(fingerprints("too few words here").is_empty());
    }

    #[test]
    fn shipped_lists_are_sorted_fingerprints() {
        for h in HELD_OUT {
            let f = h.fingerprints();
            assert!(f.len() > 100, "{}: {} fingerprints", h.name, f.len());
            assert!(
                f.windows(2).all(|w| w[0] < w[1]),
                "{} is not sorted",
                h.name
            );
            assert!(f.iter().all(|x| x % SAMPLE == 0), "{}", h.name);
        }
    }

    #[test]
    fn templates_are_refused() {
        let t = "Some text. The pass key is 123. Remember it.";
        let e = check_training_text("t.txt", t).unwrap_err();
        assert!(e.contains("t.txt") && e.contains("pass key"), "{e}");
        let ruler = "One of the special magic numbers for lamp is: 4.";
        assert!(check_training_text("r.txt", ruler).is_err());
        assert!(check_training_text("ok.txt", "A plain sentence about rivers.").is_ok());
    }
}

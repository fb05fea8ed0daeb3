//! Per-sequence sampling of a training example (spec §4.2): where the local span sits,
//! what the memory covers, and the chunk length.

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// The two training objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Memory strictly before the local span; the target is unseen.
    Continuation,
    /// Memory covers the whole sequence; the span and its target lie inside it.
    Repetition,
    /// A retrieval document (`synth`): the memory before the span holds a fact, the span
    /// ends with a cue, the targets are the fact's value.
    Retrieval,
}

/// One sampled example of a sequence `x` (with BOS at 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Which objective.
    pub kind: LossKind,
    /// Start of the local span in `x`.
    pub start: usize,
    /// Length ℓ of the local span.
    pub len: usize,
    /// The memory is `x[0..memory_end]`.
    pub memory_end: usize,
    /// Chunk length S.
    pub chunk_len: usize,
    /// Tokens after the span that decoding has already read before the first supervised
    /// one: teacher-forced, fed to every chunk and to the local window as decoding feeds
    /// them, and not supervised (0 in the reference: the target is the token right after
    /// the span).
    pub decoded: usize,
    /// Supervised tokens after those, each predicted as decoding predicts it (1 in the
    /// reference).
    pub targets: usize,
}

impl Example {
    /// The first supervised token: the one after the local span and the decoded tokens.
    pub fn target(&self, x: &[u32]) -> u32 {
        x[self.start + self.len + self.decoded]
    }
}

/// Samples an example of a sequence of length `n` with local window `w` (spec §4.2):
/// ℓ ~ U{min(30, w/2), …, min(w−2, max_span)}; continuation puts the span in the last full block
/// of `w` tokens after an offset of at least 1 and the memory before it; repetition
/// puts it in any block and the memory over everything. `targets` tokens after the span
/// are supervised (fewer when the sequence ends sooner). `None` when `n < w` or for
/// [`LossKind::Retrieval`], which `synth` lays out.
pub fn sample(
    n: usize,
    w: usize,
    max_span: usize,
    chunk_sizes: &[usize],
    targets: usize,
    kind: LossKind,
    rng: &mut StdRng,
) -> Option<Example> {
    if w < 4 || n < w || chunk_sizes.is_empty() || kind == LossKind::Retrieval {
        return None;
    }
    let blocks = n / w;
    let least = 30.min(w / 2);
    let len = rng.random_range(least..=max_span.clamp(least, w - 2));
    let (block, offset) = match kind {
        LossKind::Continuation | LossKind::Retrieval => {
            (blocks - 1, rng.random_range(1..=w - len - 1))
        }
        LossKind::Repetition => (
            rng.random_range(0..blocks),
            rng.random_range(0..=w - len - 1),
        ),
    };
    let start = block * w + offset;
    let memory_end = match kind {
        LossKind::Repetition => n,
        _ => start,
    };
    let chunk_len = chunk_sizes[rng.random_range(0..chunk_sizes.len())];
    Some(Example {
        kind,
        start,
        len,
        memory_end,
        chunk_len,
        decoded: 0,
        targets: targets.max(1).min(n - start - len),
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn examples_keep_their_target_inside_the_sequence() {
        let mut rng = StdRng::seed_from_u64(1);
        for i in 0..2000 {
            let n = 300 + i % 700;
            let kind = if i % 2 == 0 {
                LossKind::Continuation
            } else {
                LossKind::Repetition
            };
            let e = sample(n, 256, 254, &[64, 128, 256], 4, kind, &mut rng).expect("example");
            assert!(e.start + e.len + e.targets <= n, "{e:?} in {n}");
            assert!((1..=4).contains(&e.targets));
            assert!((30..=254).contains(&e.len));
            match kind {
                LossKind::Continuation => {
                    assert_eq!(e.memory_end, e.start);
                    assert!(e.start >= 1);
                }
                _ => assert_eq!(e.memory_end, n),
            }
        }
        // A span cap bounds ℓ and is reached.
        let lens: Vec<usize> = (0..500)
            .map(|_| {
                sample(900, 256, 64, &[64], 1, LossKind::Repetition, &mut rng)
                    .unwrap()
                    .len
            })
            .collect();
        assert!(lens.iter().all(|l| (30..=64).contains(l)));
        assert!(lens.contains(&30) && lens.contains(&64));
        assert!(sample(100, 256, 254, &[64], 1, LossKind::Repetition, &mut rng).is_none());
    }
}

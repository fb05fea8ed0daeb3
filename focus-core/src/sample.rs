//! Choosing the next token from logits: greedy, or temperature with nucleus (top-p)
//! sampling from a seeded generator.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Next-token selection.
#[derive(Debug)]
pub enum Sampler {
    /// The most likely token (the first one on ties).
    Greedy,
    /// Sampling at `temperature` from the smallest set of tokens whose probability
    /// reaches `top_p`.
    TopP {
        temperature: f32,
        top_p: f32,
        rng: Box<StdRng>,
    },
}

impl Sampler {
    /// Greedy when `temperature <= 0`, nucleus sampling otherwise.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        if temperature <= 0.0 {
            Self::Greedy
        } else {
            Self::TopP {
                temperature,
                top_p: top_p.clamp(f32::MIN_POSITIVE, 1.0),
                rng: Box::new(StdRng::seed_from_u64(seed)),
            }
        }
    }

    /// Picks a token id from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self {
            Self::Greedy => argmax(logits),
            Self::TopP {
                temperature,
                top_p,
                rng,
            } => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<(u32, f32)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, ((l - max) / *temperature).exp()))
                    .collect();
                probs.sort_by(|a, b| b.1.total_cmp(&a.1));
                let total: f32 = probs.iter().map(|p| p.1).sum();
                let mut kept = 0.0;
                let mut n = 0;
                for p in &probs {
                    kept += p.1;
                    n += 1;
                    if kept >= *top_p * total {
                        break;
                    }
                }
                let mut u = rng.random::<f32>() * kept;
                for p in &probs[..n] {
                    if u < p.1 {
                        return p.0;
                    }
                    u -= p.1;
                }
                probs[n - 1].0
            }
        }
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        assert_eq!(Sampler::new(0.0, 1.0, 0).sample(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn top_p_keeps_the_nucleus_and_is_reproducible() {
        // p = softmax([10, 9, 0, 0]) ≈ [0.73, 0.27, 3e-5, 3e-5]: top_p 0.9 keeps ids 0 and 1.
        let logits = [10.0, 9.0, 0.0, 0.0];
        let draw = |seed| {
            let mut s = Sampler::new(1.0, 0.9, seed);
            (0..200).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = draw(1);
        assert!(a.iter().all(|&t| t < 2));
        assert!(a.contains(&0) && a.contains(&1));
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
    }
}

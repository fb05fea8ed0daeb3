//! A low-rank update of a candidate projection, and the view through which a layer applies
//! a candidate projection with its update.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

/// A low-rank update `x · A · B` added to a candidate projection (`A`: `[d_in, rank]`,
/// `B`: `[rank, d_out]`; `B` starts at zero, so the update starts as a no-op).
#[derive(Module, Debug)]
pub struct LowRank {
    pub lora_a: Param<Tensor<2>>,
    pub lora_b: Param<Tensor<2>>,
}

impl LowRank {
    /// A fresh update of rank `rank`: `A` drawn from N(0, 1/d_in) by a generator seeded
    /// with `seed` (on the host, so every device gets the same values), `B` zero.
    pub fn new(d_in: usize, d_out: usize, rank: usize, seed: u64, device: &Device) -> Self {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let std = 1.0 / (d_in as f64).sqrt();
        let a: Vec<f32> = (0..d_in * rank)
            .map(|_| {
                // Box-Muller.
                let u1 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2 = rng.random::<f64>();
                (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Self {
            lora_a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [d_in, rank]), device)),
            lora_b: Param::from_tensor(Tensor::zeros([rank, d_out], device)),
        }
    }

    /// The dense update `A · B`, `[d_in, d_out]`.
    pub fn delta(&self) -> Tensor<2> {
        self.lora_a.val().matmul(self.lora_b.val())
    }
}

/// A candidate projection and its optional low-rank update.
pub(crate) struct CandidateProj<'a> {
    pub(crate) linear: &'a Linear,
    pub(crate) lora: Option<&'a LowRank>,
}

impl CandidateProj<'_> {
    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = self.linear.forward(x.clone());
        match self.lora {
            None => y,
            Some(l) => {
                let [b, t, d] = x.dims();
                let a = x.reshape([b * t, d]).matmul(l.lora_a.val());
                let up = a.matmul(l.lora_b.val());
                let d_out = up.dims()[1];
                y + up.reshape([b, t, d_out])
            }
        }
    }
}

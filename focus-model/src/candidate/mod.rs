//! The candidate projections, FocusLLM's only trainable weights: `beacon_{q,k,v,o}_proj` in
//! every layer's attention, optionally with a low-rank update each (`beacon_{q,k,v,o}_lora`).
//!
//! This module owns that set: adding them as copies of the base projections, the low-rank
//! updates and their merging, fixed parameter ids, freezing everything else for training,
//! and (in [`io`]) their safetensors files. The fields themselves sit on
//! [`Attention`], because their paths are the reference
//! checkpoint's keys (`model.layers.{i}.self_attn.beacon_q_proj.weight`).

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;

use crate::error::{Error, Result};
use crate::layers::Attention;
use crate::model::LlamaForCausalLM;

pub mod io;
pub mod low_rank;

pub use io::WeightSettings;
use low_rank::CandidateProj;
pub use low_rank::LowRank;

impl Attention {
    /// The candidate projections, if this layer has them.
    pub fn candidate(&self) -> Option<[&Linear; 4]> {
        Some([
            self.beacon_q_proj.as_ref()?,
            self.beacon_k_proj.as_ref()?,
            self.beacon_v_proj.as_ref()?,
            self.beacon_o_proj.as_ref()?,
        ])
    }

    /// The four candidate projections (q, k, v, o) with their optional low-rank updates.
    pub fn candidate_slots(&self) -> [(&Option<Linear>, &Option<LowRank>); 4] {
        [
            (&self.beacon_q_proj, &self.beacon_q_lora),
            (&self.beacon_k_proj, &self.beacon_k_lora),
            (&self.beacon_v_proj, &self.beacon_v_lora),
            (&self.beacon_o_proj, &self.beacon_o_lora),
        ]
    }

    /// [`candidate_slots`](Self::candidate_slots), mutably.
    pub fn candidate_slots_mut(&mut self) -> [(&mut Option<Linear>, &mut Option<LowRank>); 4] {
        [
            (&mut self.beacon_q_proj, &mut self.beacon_q_lora),
            (&mut self.beacon_k_proj, &mut self.beacon_k_lora),
            (&mut self.beacon_v_proj, &mut self.beacon_v_lora),
            (&mut self.beacon_o_proj, &mut self.beacon_o_lora),
        ]
    }

    pub(crate) fn candidate_proj(&self) -> Option<[CandidateProj<'_>; 4]> {
        let [q, k, v, o] = self.candidate()?;
        Some([
            CandidateProj {
                linear: q,
                lora: self.beacon_q_lora.as_ref(),
            },
            CandidateProj {
                linear: k,
                lora: self.beacon_k_lora.as_ref(),
            },
            CandidateProj {
                linear: v,
                lora: self.beacon_v_lora.as_ref(),
            },
            CandidateProj {
                linear: o,
                lora: self.beacon_o_lora.as_ref(),
            },
        ])
    }
}

/// First parameter id of the candidate projections (see
/// [`LlamaForCausalLM::fix_candidate_param_ids`]).
const CANDIDATE_ID_BASE: u64 = 0xF0C5_0000_0000;

fn with_id(p: &Param<Tensor<2>>, id: u64) -> Param<Tensor<2>> {
    Param::initialized(ParamId::from(id), p.val())
}

/// A copy of `l` with its own parameter identity.
fn copy_linear(l: &Linear) -> Linear {
    Linear {
        weight: Param::from_tensor(l.weight.val()),
        bias: l.bias.as_ref().map(|b| Param::from_tensor(b.val())),
    }
}

impl LlamaForCausalLM {
    /// Adds candidate projections initialised as copies of the base projections (as the
    /// reference does when a checkpoint has none). Existing ones are kept.
    pub fn with_candidate_projections(mut self) -> Self {
        for layer in &mut self.model.layers {
            let a = &mut layer.self_attn;
            a.beacon_q_proj
                .get_or_insert_with(|| copy_linear(&a.q_proj));
            a.beacon_k_proj
                .get_or_insert_with(|| copy_linear(&a.k_proj));
            a.beacon_v_proj
                .get_or_insert_with(|| copy_linear(&a.v_proj));
            a.beacon_o_proj
                .get_or_insert_with(|| copy_linear(&a.o_proj));
        }
        self
    }

    /// Adds rank-`rank` updates (`B = 0`, so the model is unchanged) on top of every
    /// candidate projection, `A` drawn from `seed`; they are what training changes in
    /// low-rank mode.
    pub fn with_low_rank(mut self, rank: usize, seed: u64) -> Result<Self> {
        if rank == 0 {
            return Err(Error::Input(
                "the low-rank update needs a rank of at least 1".into(),
            ));
        }
        self = self.with_candidate_projections();
        let device = self.device();
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            let a = &mut layer.self_attn;
            let init = |l: &Option<Linear>, j: u64| {
                let d = l.as_ref().expect("candidate projections").weight.dims();
                let r = rank.min(d[0]).min(d[1]);
                LowRank::new(d[0], d[1], r, seed ^ ((i as u64) << 8 | j), &device)
            };
            a.beacon_q_lora = Some(init(&a.beacon_q_proj, 0));
            a.beacon_k_lora = Some(init(&a.beacon_k_proj, 1));
            a.beacon_v_lora = Some(init(&a.beacon_v_proj, 2));
            a.beacon_o_lora = Some(init(&a.beacon_o_proj, 3));
        }
        Ok(self)
    }

    /// The rank of the low-rank updates, if the model has them.
    pub fn low_rank(&self) -> Option<usize> {
        let l = self
            .model
            .layers
            .first()?
            .self_attn
            .beacon_q_lora
            .as_ref()?;
        Some(l.lora_a.dims()[1])
    }

    /// Folds the low-rank updates into the candidate projections (`W + A·B`) and drops them.
    pub fn merge_low_rank(mut self) -> Self {
        for layer in &mut self.model.layers {
            for (proj, lora) in layer.self_attn.candidate_slots_mut() {
                if let (Some(p), Some(l)) = (proj.as_mut(), lora.take()) {
                    let w = p.weight.val() + l.delta();
                    p.weight = Param::initialized(p.weight.id, w);
                }
            }
        }
        self
    }

    /// Gives the candidate projections (and their low-rank updates) fixed parameter ids,
    /// the same in every run, so that saved optimizer state finds its parameters again.
    pub fn fix_candidate_param_ids(mut self) -> Self {
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            let slots = layer.self_attn.candidate_slots_mut();
            for (j, (proj, lora)) in slots.into_iter().enumerate() {
                let id = CANDIDATE_ID_BASE + ((i * 4 + j) * 4) as u64;
                if let Some(p) = proj.as_mut() {
                    p.weight = with_id(&p.weight, id);
                }
                if let Some(l) = lora.as_mut() {
                    l.lora_a = with_id(&l.lora_a, id + 1);
                    l.lora_b = with_id(&l.lora_b, id + 2);
                }
            }
        }
        self
    }

    /// Parameter ids of what trains: the low-rank updates where the model has them, else
    /// the candidate projections (see [`fix_candidate_param_ids`](Self::fix_candidate_param_ids)).
    pub fn trainable_ids(&self) -> Vec<ParamId> {
        let mut ids = Vec::new();
        for layer in &self.model.layers {
            for (p, l) in layer.self_attn.candidate_slots() {
                match (p, l) {
                    (_, Some(l)) => ids.extend([l.lora_a.id, l.lora_b.id]),
                    (Some(p), None) => ids.push(p.weight.id),
                    (None, None) => {}
                }
            }
        }
        ids
    }

    /// Freezes everything but what trains (see [`trainable_ids`](Self::trainable_ids)).
    pub fn freeze_all_but_candidates(self) -> Self {
        let mut model = self.no_grad();
        let low_rank = model.low_rank().is_some();
        for layer in &mut model.model.layers {
            for (p, l) in layer.self_attn.candidate_slots_mut() {
                if low_rank {
                    if let Some(u) = l.take() {
                        *l = Some(u.set_require_grad(true));
                    }
                } else if let Some(lin) = p.take() {
                    *p = Some(lin.set_require_grad(true));
                }
            }
        }
        model
    }
}

//! The generation state machine: prefill (for FocusLLM: chunks in batches, then the local
//! pass), then one step per generated token; and the one generation loop on top of it.

use crate::config::{Decode, FocusConfig};
use crate::error::{Error, Result};
use crate::memory::ChunkMemory;
use crate::model::CondensingModel;
use crate::plan::Plan;
use crate::reading::Reading;
use crate::sample::Sampler;

/// A batch of chunks and its cache.
struct Group<M: CondensingModel> {
    cache: M::Cache,
    candidates: M::Candidates,
}

enum State<M: CondensingModel> {
    /// A plain KV-cached decoder: a baseline reading, or an input that fit in the local
    /// window.
    Plain(M::Cache),
    /// Memory chunks in batches, and the growing local input.
    Memory {
        groups: Vec<Group<M>>,
        local: Vec<u32>,
        /// The local rows' keys and values, kept under [`Decode::CachedWindow`].
        window: Option<M::Cache>,
    },
}

/// The state of one generation.
pub struct Session<'m, M: CondensingModel> {
    model: &'m M,
    reading: Reading,
    /// How FocusLLM cut the input (`None` for the baselines).
    plan: Option<Plan>,
    state: State<M>,
    /// The token whose candidate the chunks hold (the last token fed).
    last: u32,
    generated: Vec<u32>,
}

impl<M: CondensingModel> std::fmt::Debug for Session<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("reading", &self.reading)
            .field("plan", &self.plan)
            .field("uses_memory", &self.uses_memory())
            .field("generated", &self.generated)
            .finish()
    }
}

impl<'m, M: CondensingModel> Session<'m, M> {
    /// Reads `ids` as `reading` says and returns the session and the next-token logits.
    /// Full attention, and FocusLLM on an input that fits its window, read exactly `ids`,
    /// as the tokenizer gave them (BOS only where the tokenizer adds one). The truncated
    /// baseline is FocusLLM's local pass without memory: the last `window` tokens, after BOS
    /// when it cut something ([`Reading::plain_input`]).
    ///
    /// `progress` is called after each chunk batch with (chunks done, total).
    pub fn read(
        model: &'m M,
        reading: Reading,
        bos: u32,
        ids: &[u32],
        progress: impl FnMut(usize, usize),
    ) -> Result<(Self, M::Logits)> {
        let mut none = ChunkMemory::new(0);
        Self::read_with_memory(model, reading, bos, ids, &[], &mut none, progress)
    }

    /// [`read`](Self::read) of an input made of pieces that begin at `starts` (a chat's
    /// messages; empty for one text), with a document memory, which FocusLLM reading uses
    /// (see [`prefill_with_memory`](Self::prefill_with_memory)) and the baselines leave
    /// alone.
    pub fn read_with_memory(
        model: &'m M,
        reading: Reading,
        bos: u32,
        ids: &[u32],
        starts: &[usize],
        memory: &mut ChunkMemory<M::ChunkKv>,
        progress: impl FnMut(usize, usize),
    ) -> Result<(Self, M::Logits)> {
        if let Reading::Focus(cfg) = reading {
            return Self::prefill_with_memory(model, &cfg, bos, ids, starts, memory, progress);
        }
        let input = reading
            .plain_input(ids, bos)
            .expect("a baseline reads its input in one pass");
        let last = *ids
            .last()
            .ok_or_else(|| Error::Input("empty input".into()))?;
        let (logits, cache) = model.prefill(&input);
        let s = Self {
            model,
            reading,
            plan: None,
            state: State::Plain(cache),
            last,
            generated: Vec::new(),
        };
        Ok((s, logits))
    }

    /// Runs the FocusLLM prefill of `ids` and returns the session and the next-token logits.
    ///
    /// `progress` is called after each chunk batch with (chunks done, total).
    pub fn prefill(
        model: &'m M,
        cfg: &FocusConfig,
        bos: u32,
        ids: &[u32],
        progress: impl FnMut(usize, usize),
    ) -> Result<(Self, M::Logits)> {
        let mut none = ChunkMemory::new(0);
        Self::prefill_with_memory(model, cfg, bos, ids, &[], &mut none, progress)
    }

    /// [`prefill`](Self::prefill) of an input made of pieces that begin at `starts`
    /// (chunked as [`Plan::with_pieces`] says; empty: the reference's uniform cut), with a
    /// document memory: the chunks `memory` holds are not computed again (only their prompt
    /// rows), and the chunks it lacks are computed and offered to it. The result is the
    /// same as without a memory.
    pub fn prefill_with_memory(
        model: &'m M,
        cfg: &FocusConfig,
        bos: u32,
        ids: &[u32],
        starts: &[usize],
        memory: &mut ChunkMemory<M::ChunkKv>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Self, M::Logits)> {
        let plan = Plan::with_pieces(ids, starts, cfg, bos)?;
        let last = *ids
            .last()
            .ok_or_else(|| Error::Input("empty input".into()))?;
        if plan.num_chunks() == 0 {
            let local = plan.local_input(ids, bos);
            let (logits, cache) = model.prefill(&local);
            let s = Self {
                model,
                reading: Reading::Focus(*cfg),
                plan: Some(plan),
                state: State::Plain(cache),
                last,
                generated: Vec::new(),
            };
            return Ok((s, logits));
        }
        let total = plan.num_chunks();
        let mut groups = Vec::new();
        for batch in plan.batches(cfg.max_batch) {
            let chunks: Vec<&[u32]> = batch
                .clone()
                .map(|j| &ids[plan.chunks[j].clone()])
                .collect();
            let kv = memory.read(model, &chunks);
            let kv: Vec<&M::ChunkKv> = kv.iter().collect();
            let (cache, candidates) = model.prefill_prompts(&kv, &plan.prompt);
            groups.push(Group { cache, candidates });
            progress(batch.end, total);
        }
        let local = plan.local_input(ids, bos);
        let cands: Vec<&M::Candidates> = groups.iter().map(|g| &g.candidates).collect();
        let (logits, window) = model.local_pass(&cands, &local);
        let window = (cfg.decode == Decode::CachedWindow).then_some(window);
        let s = Self {
            model,
            reading: Reading::Focus(*cfg),
            plan: Some(plan),
            state: State::Memory {
                groups,
                local,
                window,
            },
            last,
            generated: Vec::new(),
        };
        Ok((s, logits))
    }

    /// Feeds the token chosen after the last logits; returns the next logits.
    pub fn step(&mut self, token: u32) -> M::Logits {
        let model = self.model;
        let logits = match &mut self.state {
            State::Plain(cache) => model.step(cache, token),
            State::Memory {
                groups,
                local,
                window,
            } => {
                for g in groups.iter_mut() {
                    g.candidates = model.step_chunks(&mut g.cache, self.last, token);
                }
                local.push(token);
                let cands: Vec<&M::Candidates> = groups.iter().map(|g| &g.candidates).collect();
                match window {
                    Some(cache) => model.local_step(&cands, cache, token),
                    None => model.local_pass(&cands, local).0,
                }
            }
        };
        self.last = token;
        self.generated.push(token);
        logits
    }

    /// Generates after `row`, the logits that [`read`](Self::read), [`prefill`](Self::prefill)
    /// or [`step`](Self::step) returned, as [`CondensingModel::logits_row`] gives them (so a
    /// caller can look at them first): picks each token with `sampler`, hands it to
    /// `on_token` (which may return `false` to stop), and feeds it back, until `max_new`
    /// tokens or a token of `stop` (kept in the output). The last token is not fed: nothing
    /// reads its logits. Returns the tokens.
    pub fn generate(
        &mut self,
        mut row: Vec<f32>,
        sampler: &mut Sampler,
        max_new: usize,
        stop: &[u32],
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Vec<u32> {
        let mut out = Vec::with_capacity(max_new);
        if max_new == 0 {
            return out;
        }
        loop {
            let token = sampler.sample(&row);
            out.push(token);
            if !on_token(token) || stop.contains(&token) || out.len() == max_new {
                return out;
            }
            row = self.model.logits_row(self.step(token));
        }
    }

    /// How FocusLLM split the input (`None` for the baselines).
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// Tokens fed with [`step`](Self::step) so far.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// Whether the memory is in use (the input was longer than the local window).
    pub fn uses_memory(&self) -> bool {
        matches!(self.state, State::Memory { .. })
    }

    /// The chunk caches, batch by batch (for inspection and tests).
    pub fn chunk_caches(&self) -> Vec<&M::Cache> {
        match &self.state {
            State::Plain(_) => Vec::new(),
            State::Memory { groups, .. } => groups.iter().map(|g| &g.cache).collect(),
        }
    }
}

//! The model's thread: one loaded model, requests taken one at a time from a bounded queue,
//! tokens sent back as they come. A request whose client has gone (its receiver dropped)
//! stops at the next token. The thread keeps a document memory: chunks read for one request
//! are not computed again for the next one that holds them.

use std::sync::{Arc, Mutex};

use focus_core::{ChunkMemory, CondensingModel, Reading, Sampler, Session};
use focus_model::{LayerKv, Loaded};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One generation to run.
#[derive(Debug)]
pub struct Job {
    pub ids: Vec<u32>,
    /// Where a chat's messages begin (`focus_core::Plan::with_pieces`).
    pub starts: Vec<usize>,
    pub reading: Reading,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub reply: mpsc::Sender<Event>,
}

/// What the worker sends back for a job.
#[derive(Debug)]
pub enum Event {
    /// New text (whole characters only).
    Text(String),
    /// The end: why, and the number of generated tokens.
    Done {
        finish_reason: &'static str,
        tokens: usize,
    },
    /// The job failed.
    Failed(String),
}

/// The document memory's figures as the server reports them (`/memory`, `/health`),
/// updated after each job.
pub type MemoryReport = Arc<Mutex<Value>>;

/// The figures of `memory` and of its disk store.
pub fn memory_report(memory: &ChunkMemory<Vec<LayerKv>>) -> Value {
    let disk = memory.store().map(|s| {
        let (bytes, entries) = s.usage().unwrap_or((0, 0));
        json!({"dir": s.dir().display().to_string(), "entries": entries, "bytes": bytes,
               "hits": s.hits, "misses": s.misses, "damaged": s.damaged, "writes": s.writes,
               "prefix_hits": s.prefix_hits})
    });
    json!({"chunks": memory.len(), "bytes": memory.bytes(), "hits": memory.hits,
           "lookups": memory.lookups, "extended": memory.extended,
           "extended_tokens": memory.extended_tokens, "disk": disk})
}

/// Runs jobs until the queue closes, with `memory` (and its disk store, if any), keeping
/// `report` up to date.
pub fn run(
    loaded: Loaded,
    mut jobs: mpsc::Receiver<Job>,
    mut memory: ChunkMemory<Vec<LayerKv>>,
    report: MemoryReport,
) {
    while let Some(job) = jobs.blocking_recv() {
        let last = serve_one(&loaded, &job, &mut memory)
            .unwrap_or_else(|e| Some(Event::Failed(e.to_string())));
        for note in memory.take_notes() {
            tracing::warn!("{note}");
        }
        if let Ok(mut r) = report.lock() {
            *r = memory_report(&memory);
        }
        // The reply ends once the figures count this request, so that a client asking for
        // them next sees it.
        if let Some(event) = last {
            let _ = job.reply.blocking_send(event);
        }
    }
}

/// Answers `job` up to its last event, which it returns (`None` when the client left).
fn serve_one(
    loaded: &Loaded,
    job: &Job,
    memory: &mut ChunkMemory<Vec<LayerKv>>,
) -> anyhow::Result<Option<Event>> {
    let model = &loaded.model;
    let tok = &loaded.tokenizer;
    let eos = tok.eos_ids().to_vec();
    let bos = model.config().bos_token_id;
    let hits = memory.hits;
    let (mut session, logits) = Session::read_with_memory(
        model,
        job.reading,
        bos,
        &job.ids,
        &job.starts,
        memory,
        |_, _| {},
    )?;
    if let Some(plan) = session.plan() {
        tracing::info!(
            "{} of {} chunks from the document memory ({} MB held)",
            memory.hits - hits,
            plan.num_chunks(),
            memory.bytes() >> 20
        );
    }
    let first = model.logits_row(logits);
    let mut sampler = Sampler::new(job.temperature, job.top_p, job.seed);
    let mut stream = tok.stream();
    let mut gone = false;
    let out = session.generate(first, &mut sampler, job.max_tokens, &eos, |token| {
        if eos.contains(&token) {
            return true;
        }
        if let Ok(Some(new)) = stream.push(token)
            && job.reply.blocking_send(Event::Text(new)).is_err()
        {
            gone = true;
            return false;
        }
        true
    });
    if gone {
        tracing::info!(
            "the client left after {} tokens; generation stopped",
            out.len()
        );
        return Ok(None);
    }
    let stopped = out.last().is_some_and(|t| eos.contains(t));
    Ok(Some(Event::Done {
        finish_reason: if stopped { "stop" } else { "length" },
        tokens: out.len(),
    }))
}

//! `focus serve`: the loaded model behind an OpenAI-compatible HTTP API
//! (`/v1/chat/completions`, `/v1/completions`, streaming or not, `/v1/models`, `/health`).
//!
//! One model thread runs requests one at a time from a bounded queue (a full queue answers
//! 503); FocusLLM settings may be set per request in a `focus` object. Bad requests get
//! OpenAI's error JSON with a 4xx status; a client that disconnects stops its generation.

mod api;
mod worker;

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use focus_core::{ChunkMemory, Reading};
use focus_model::{ChatTemplate, LlamaConfig, Tokenizer};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::args::{FocusArgs, ModelArgs};
use crate::load::load_model;
use api::{ApiError, ChatRequest, Common, CompletionRequest, Usage, now};
use worker::{Event, Job, MemoryReport};

/// Serve the model over HTTP with the OpenAI API.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Server defaults of the FocusLLM settings (a request's `focus` object overrides them).
    #[command(flatten)]
    pub focus: FocusArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model name clients send [default: the model file's name without extension].
    #[arg(long)]
    pub name: Option<String>,
    /// Requests that may wait for the model; more are answered with 503.
    #[arg(long, default_value_t = 8)]
    pub queue: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Longest prompt in tokens.
    #[arg(long, default_value_t = 131_072)]
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_limit: usize,
    /// `max_tokens` of a request that sets none.
    #[arg(long, default_value_t = 256)]
    pub default_max_tokens: usize,
    /// Byte budget of the document memory: the keys and values of memory chunks kept
    /// between requests, so that another question about the same long text computes only
    /// each chunk's prompt rows (least recently used chunks go first; 0 turns it off).
    /// E.g. 2GiB, 512MiB, 0.
    #[arg(long, default_value = "2GiB", value_parser = crate::args::parse_bytes)]
    pub memory_budget: usize,
    #[command(flatten)]
    pub store: crate::args::StoreArgs,
}

struct AppState {
    name: String,
    jobs: mpsc::Sender<Job>,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    config: LlamaConfig,
    focus: FocusArgs,
    max_prompt_tokens: usize,
    max_tokens_limit: usize,
    default_max_tokens: usize,
}

pub fn run(args: Args, quiet: bool) -> Result<()> {
    let (loaded, device) = load_model(&args.model, true)?;
    let config = loaded.model.config().clone();
    // The server's own settings must be valid before it listens.
    args.focus.config(&config)?;
    let name = args.name.clone().unwrap_or_else(|| {
        let stem = args.model.model.file_stem().unwrap_or_default();
        stem.to_string_lossy().into_owned()
    });
    let (jobs, queue) = mpsc::channel(args.queue.max(1));
    let state = Arc::new(AppState {
        name,
        jobs,
        tokenizer: loaded.tokenizer.clone(),
        template: loaded.chat_template.clone(),
        config,
        focus: args.focus.clone(),
        max_prompt_tokens: args.max_prompt_tokens,
        max_tokens_limit: args.max_tokens_limit,
        default_max_tokens: args.default_max_tokens,
    });
    let mut memory = ChunkMemory::new(args.memory_budget);
    if let Some(store) = crate::load::open_store(&args.store, &args.model, &device)? {
        memory = memory.with_store(store);
    }
    let report: MemoryReport = Arc::new(std::sync::Mutex::new(worker::memory_report(&memory)));
    let shared = report.clone();
    let model_thread = std::thread::spawn(move || worker::run(loaded, queue, memory, shared));
    let figures = move || report.lock().map(|v| v.clone()).unwrap_or(Value::Null);
    let health = figures.clone();
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let memory = health();
                async move { Json(json!({"status": "ok", "memory": memory})) }
            }),
        )
        .route(
            "/memory",
            get(move || {
                let memory = figures();
                async move { Json(memory) }
            }),
        )
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            ApiError::status(StatusCode::NOT_FOUND, "not_found_error", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(args.max_body_bytes))
        .with_state(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        // Printed even with --quiet: with --port 0 it is the only way to learn the port.
        eprintln!("listening on http://{addr}");
        let _ = quiet;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })?;
    drop(rt);
    let _ = model_thread.join();
    Ok(())
}

async fn models(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": s.name, "object": "model", "created": 0, "owned_by": "focus"}],
    }))
}

/// The body as JSON of type `T`, or the error a client should see.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request_too_large"
        } else {
            "invalid_request_error"
        };
        ApiError::status(status, kind, e.body_text())
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}"), None))
}

/// What the two endpoints have decided before the model runs.
struct Prepared {
    ids: Vec<u32>,
    /// Where a chat's messages begin (none for a completion).
    starts: Vec<usize>,
    max_tokens: usize,
    reading: Reading,
}

impl AppState {
    fn prepare(&self, c: &Common, ids: Vec<u32>, starts: Vec<usize>) -> Result<Prepared, ApiError> {
        if c.model != self.name {
            return Err(ApiError::status(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!(
                    "the model `{}` does not exist (this server has `{}`)",
                    c.model, self.name
                ),
            ));
        }
        let max_tokens = match c.max_completion_tokens.or(c.max_tokens) {
            None => self.default_max_tokens,
            Some(n) if n < 1 => {
                return Err(ApiError::bad_request(
                    format!("max_tokens must be at least 1, not {n}"),
                    Some("max_tokens"),
                ));
            }
            Some(n) if n as u64 > self.max_tokens_limit as u64 => {
                return Err(ApiError::bad_request(
                    format!(
                        "max_tokens {n} is above this server's limit of {}",
                        self.max_tokens_limit
                    ),
                    Some("max_tokens"),
                ));
            }
            Some(n) => n as usize,
        };
        if ids.is_empty() {
            return Err(ApiError::bad_request("the prompt is empty", None));
        }
        if ids.len() > self.max_prompt_tokens {
            return Err(ApiError::bad_request(
                format!(
                    "the prompt has {} tokens, more than this server's limit of {}",
                    ids.len(),
                    self.max_prompt_tokens
                ),
                Some("messages"),
            ));
        }
        let mut focus = self.focus.clone();
        if let Some(ext) = &c.focus {
            focus.local_window = ext.local_window.or(focus.local_window);
            focus.chunk = ext.chunk.or(focus.chunk);
            focus.prompt.prompt_cap = ext.prompt_cap.or(focus.prompt.prompt_cap);
        }
        let mut cfg = focus
            .config(&self.config)
            .map_err(|e| ApiError::bad_request(e.to_string(), Some("focus")))?;
        if let Some(d) = c.focus.as_ref().and_then(|e| e.decoding) {
            cfg.decode = d;
        }
        let reading = Reading::Focus(cfg);
        let positions = reading.piece_positions(ids.len(), &starts, max_tokens);
        let max_pos = self.config.max_position_embeddings;
        if positions > max_pos {
            return Err(ApiError::bad_request(
                format!(
                    "{} candidates, the local window and max_tokens {max_tokens} need \
                     {positions} positions, more than the model's {max_pos}",
                    focus_core::memory_chunks(ids.len(), &starts, &cfg).len()
                ),
                Some("max_tokens"),
            ));
        }
        if let Some(t) = c.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::bad_request(
                format!("temperature {t} is outside 0..=2"),
                Some("temperature"),
            ));
        }
        Ok(Prepared {
            ids,
            starts,
            max_tokens,
            reading,
        })
    }

    /// Queues the job; 503 when the queue is full.
    fn submit(&self, c: &Common, p: Prepared) -> Result<mpsc::Receiver<Event>, ApiError> {
        let (reply, events) = mpsc::channel(64);
        let job = Job {
            ids: p.ids,
            starts: p.starts,
            reading: p.reading,
            max_tokens: p.max_tokens,
            temperature: c.temperature.unwrap_or(1.0),
            top_p: c.top_p.unwrap_or(1.0),
            seed: c.seed.unwrap_or(0),
            reply,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "the server's queue is full; try again later",
            ),
            mpsc::error::TrySendError::Closed(_) => ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_shutting_down",
                "the server is shutting down",
            ),
        })?;
        Ok(events)
    }
}

/// Which endpoint a response is for: the object names and where the text goes.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

async fn chat(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: ChatRequest = match parse(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(template) = &s.template else {
        return ApiError::bad_request(
            "this model carries no chat template; use /v1/completions",
            None,
        )
        .into_response();
    };
    if req.messages.is_empty() {
        return ApiError::bad_request("messages is empty", Some("messages")).into_response();
    }
    // Each long message is chunked from its own start, so a document's chunks are found in
    // the memory whatever conversation it comes in (docs/serving.md).
    let (ids, starts) = match template.prompt_ids_and_starts(&s.tokenizer, &req.messages) {
        Ok(found) => found,
        Err(e) => return ApiError::bad_request(e.to_string(), Some("messages")).into_response(),
    };
    respond(&s, &req.common, ids, starts, Kind::Chat).await
}

async fn completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: CompletionRequest = match parse(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let ids = match s.tokenizer.encode_prompt(&req.prompt) {
        Ok(ids) if ids == [s.tokenizer.bos_id()] => Vec::new(),
        Ok(ids) => ids,
        Err(e) => return ApiError::bad_request(e.to_string(), Some("prompt")).into_response(),
    };
    respond(&s, &req.common, ids, Vec::new(), Kind::Completion).await
}

async fn respond(
    s: &AppState,
    c: &Common,
    ids: Vec<u32>,
    starts: Vec<usize>,
    kind: Kind,
) -> Response {
    let prepared = match s.prepare(c, ids, starts) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let prompt_tokens = prepared.ids.len();
    let mut events = match s.submit(c, prepared) {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    let id = format!("focus-{:x}", rand::random::<u64>());
    let created = now();
    let model = s.name.clone();
    if c.stream {
        let stream = ReceiverStream::new(events).map(move |event| {
            let chunk = match event {
                Event::Text(text) => chunk(kind, &id, created, &model, Some(&text), None),
                Event::Done { finish_reason, .. } => {
                    chunk(kind, &id, created, &model, None, Some(finish_reason))
                }
                Event::Failed(msg) => json!({"error": {"message": msg, "type": "server_error"}}),
            };
            Ok::<_, Infallible>(SseEvent::default().data(chunk.to_string()))
        });
        let done = tokio_stream::once(Ok(SseEvent::default().data("[DONE]")));
        return Sse::new(stream.chain(done))
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done {
                finish_reason,
                tokens,
            } => {
                let usage = Usage {
                    prompt_tokens,
                    completion_tokens: tokens,
                    total_tokens: prompt_tokens + tokens,
                };
                return Json(full(
                    kind,
                    &id,
                    created,
                    &model,
                    &text,
                    finish_reason,
                    usage,
                ))
                .into_response();
            }
            Event::Failed(msg) => {
                return ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "server_error", msg)
                    .into_response();
            }
        }
    }
    ApiError::status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the model thread stopped",
    )
    .into_response()
}

/// A whole (non-streaming) response.
fn full(
    kind: Kind,
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish_reason: &str,
    usage: Usage,
) -> Value {
    let (object, choice) = match kind {
        Kind::Chat => (
            "chat.completion",
            json!({"index": 0, "message": {"role": "assistant", "content": text},
                   "finish_reason": finish_reason, "logprobs": null}),
        ),
        Kind::Completion => (
            "text_completion",
            json!({"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": null}),
        ),
    };
    json!({"id": id, "object": object, "created": created, "model": model,
           "choices": [choice], "usage": usage})
}

/// One server-sent chunk: new text, or the closing one with the finish reason.
fn chunk(
    kind: Kind,
    id: &str,
    created: u64,
    model: &str,
    text: Option<&str>,
    finish_reason: Option<&str>,
) -> Value {
    let (object, choice) = match kind {
        Kind::Chat => {
            let delta = match text {
                Some(t) => json!({"role": "assistant", "content": t}),
                None => json!({}),
            };
            (
                "chat.completion.chunk",
                json!({"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}),
            )
        }
        Kind::Completion => (
            "text_completion",
            json!({"index": 0, "text": text.unwrap_or(""), "finish_reason": finish_reason,
                   "logprobs": null}),
        ),
    };
    json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]})
}

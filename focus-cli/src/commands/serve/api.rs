//! The OpenAI wire format: requests, responses, stream chunks and errors.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use focus_model::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// FocusLLM settings a request may set (a `focus` object beside the OpenAI fields); the
/// server's settings fill what it leaves out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FocusExt {
    pub local_window: Option<usize>,
    pub chunk: Option<usize>,
    pub prompt_cap: Option<usize>,
    /// `exact` or `cached-window` (see `focus generate --decoding`).
    pub decoding: Option<focus_core::Decode>,
}

/// What `/v1/chat/completions` and `/v1/completions` share. Unknown OpenAI fields are
/// ignored, as other servers do.
#[derive(Debug, Clone, Deserialize)]
pub struct Common {
    pub model: String,
    /// Signed, so that a negative value is refused with a message rather than a parse error.
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub focus: Option<FocusExt>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub prompt: String,
    #[serde(flatten)]
    pub common: Common,
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

/// An error in OpenAI's shape, with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
        }
    }

    pub fn status(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": Value::Null,
            }
        });
        (self.status, Json(body)).into_response()
    }
}

/// Seconds since the Unix epoch, for `created`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

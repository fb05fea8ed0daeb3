//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template`, or
//! `chat_template` in an HF directory's `tokenizer_config.json`), rendered with minijinja
//! the way transformers renders it with Jinja2: `trim_blocks` and `lstrip_blocks` on,
//! Python string methods (`.strip()`, `.startswith()`, ...) available, `raise_exception`
//! an error, `messages`, `add_generation_prompt`, `bos_token` and `eos_token` in scope.

use std::path::Path;

use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may know others).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A turn of `role` saying `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A model's chat template with the special-token strings it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Chat(e.to_string())
}

impl ChatTemplate {
    /// A template from its Jinja source and the text of the BOS and EOS tokens.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        }
    }

    /// The template stored in a GGUF file, if any.
    pub fn from_gguf(g: &GgufFile) -> Result<Option<Self>> {
        let Some(source) = g
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
        else {
            return Ok(None);
        };
        let token = |key: &str| -> String {
            let id = g.get_u64(key).ok();
            let tokens = g
                .metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array());
            match (id, tokens) {
                (Some(id), Some(t)) => t
                    .get(id as usize)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            }
        };
        Ok(Some(Self::new(
            source,
            token("tokenizer.ggml.bos_token_id"),
            token("tokenizer.ggml.eos_token_id"),
        )))
    }

    /// The template of an HF directory's `tokenizer_config.json`, if any: `chat_template`
    /// as a string, or the one named `default` in a list of named templates.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("tokenizer_config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let cfg: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let source = match &cfg["chat_template"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(named) => match named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
            {
                Some(s) => s.to_string(),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        // Special tokens are written as a string or as an added-token object.
        let token = |key: &str| match &cfg[key] {
            serde_json::Value::String(s) => s.clone(),
            v => v["content"].as_str().unwrap_or_default().to_string(),
        };
        Ok(Some(Self::new(
            source,
            token("bos_token"),
            token("eos_token"),
        )))
    }

    /// The token ids of `messages` with the assistant's turn opened: the rendered text
    /// tokenised with special tokens recognised and nothing added (the template places BOS
    /// where the model wants it).
    pub fn prompt_ids(&self, tokenizer: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>> {
        tokenizer.encode(&self.render(messages, true)?, false)
    }

    /// [`prompt_ids`](Self::prompt_ids) and the token positions where messages after the
    /// first begin, for chunking a conversation message by message
    /// (`focus_core::Plan::with_pieces`). A message's start is where the rendering of the
    /// messages before it ends, counted only when that rendering is the beginning of the
    /// whole one (a template may render a conversation's head differently) and a token
    /// starts exactly there; the ids are those of `prompt_ids` either way.
    pub fn prompt_ids_and_starts(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
    ) -> Result<(Vec<u32>, Vec<usize>)> {
        let whole = self.render(messages, true)?;
        let (ids, offsets) = tokenizer.encode_with_offsets(&whole)?;
        let mut starts = Vec::new();
        for k in 1..messages.len() {
            let head = self.render(&messages[..k], false)?;
            if !whole.starts_with(&head) {
                continue;
            }
            let b = head.len();
            let i = offsets.partition_point(|&(start, _)| start < b);
            let clean = i < offsets.len()
                && offsets[i].0 == b
                && offsets[..i].iter().all(|&(_, end)| end <= b);
            if clean {
                starts.push(i);
            }
        }
        Ok((ids, starts))
    }

    /// Renders `messages`, followed by the opening of the assistant's turn when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.render_str(&self.source, ctx).map_err(|e| {
            // A template's own `raise_exception` message is the useful part.
            match e.kind() {
                ErrorKind::InvalidOperation => err(e.detail().unwrap_or("invalid operation")),
                _ => err(e),
            }
        })
    }
}

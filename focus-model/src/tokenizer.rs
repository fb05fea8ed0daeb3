//! Text <-> token ids, through the `tokenizers` crate: from an HF `tokenizer.json`,
//! or rebuilt from the vocabulary and merges stored in a GGUF file.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};

/// Where a token lies in the text it came from: its first byte and one past its last.
pub type Offsets = (usize, usize);

/// A tokenizer plus the ids the model treats specially.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: u32,
    eos: Vec<u32>,
    add_bos: bool,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Loads an HF `tokenizer.json`.
    pub fn from_file(path: &Path, bos: u32, eos: Vec<u32>) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Tokenizer(format!("{} not found", path.display())));
        }
        let err = |e: &dyn std::fmt::Display| Error::Tokenizer(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // The JSON syntax is checked first: `tokenizers` panics (instead of returning an
        // error) on a syntax error inside the `decoder` object.
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| err(&e))?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e| err(&e))?;
        Ok(Self {
            inner,
            bos,
            eos,
            add_bos: true,
        })
    }

    /// Rebuilds the tokenizer stored in a GGUF file (byte-level BPE, `tokenizer.ggml.model = gpt2`).
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let model = g
            .get("tokenizer.ggml.model")?
            .as_str()
            .unwrap_or_default()
            .to_string();
        if model != "gpt2" {
            return Err(Error::Unsupported(format!(
                "GGUF tokenizer model {model:?} (only byte-level BPE, \"gpt2\")"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let arr = g
                .get(key)?
                .as_array()
                .ok_or_else(|| Error::Tokenizer(format!("{key} is not an array")))?;
            arr.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Error::Tokenizer(format!("{key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(Error::Tokenizer(format!("malformed merge {m:?}"))),
            })
            .collect::<Result<_>>()?;
        let types: Vec<u64> = match g.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let pre = g
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tok: PreTokenizerWrapper = match pre {
            // llama.cpp's `smollm` pre-tokenizer: digits one by one, then GPT-2 byte level.
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "gpt2" | "default" => byte_level.into(),
            other => return Err(Error::Unsupported(format!("GGUF pre-tokenizer {other:?}"))),
        };
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, ty)| **ty == 3)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(tok_err)?;
        let bos = g.get_u64("tokenizer.ggml.bos_token_id").unwrap_or(1) as u32;
        let eos = g.get_u64("tokenizer.ggml.eos_token_id").unwrap_or(2) as u32;
        let add_bos = match g.metadata.get("tokenizer.ggml.add_bos_token") {
            Some(Value::Bool(b)) => *b,
            _ => true,
        };
        Ok(Self {
            inner,
            bos,
            eos: vec![eos],
            add_bos,
        })
    }

    /// Token ids of `text`, optionally preceded by BOS. Special-token strings in the
    /// text are recognised.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos {
            ids.push(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// [`encode`](Self::encode) without BOS, with each token's byte range in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<Offsets>)> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// Token ids of a prompt: BOS first when the model's tokenizer adds it
    /// (`tokenizer.ggml.add_bos_token` in GGUF; always for `tokenizer.json`).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(text, self.add_bos)
    }

    /// Whether prompts start with BOS ([`Self::encode_prompt`] adds it).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Text of `ids` (special tokens included).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// A decoder of generated tokens into text as it becomes whole: see [`TextStream`].
    pub fn stream(&self) -> TextStream<'_> {
        TextStream {
            tokenizer: self,
            ids: Vec::new(),
            sent: String::new(),
        }
    }

    /// The beginning-of-sequence id.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// The end-of-sequence ids.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Writes the tokenizer as an HF `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(tok_err)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Generated tokens turned into text piece by piece: each new token gives the text added
/// since the last piece, held back while it ends in half of a multi-byte character.
#[derive(Debug)]
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<u32>,
    sent: String,
}

impl TextStream<'_> {
    /// The text handed out so far.
    pub fn sent(&self) -> &str {
        &self.sent
    }

    /// Adds `token`; returns the new whole text, if any.
    pub fn push(&mut self, token: u32) -> Result<Option<String>> {
        self.ids.push(token);
        let text = self.tokenizer.decode(&self.ids)?;
        match text.strip_prefix(self.sent.as_str()) {
            Some(new) if !new.is_empty() && !new.ends_with('\u{FFFD}') => {
                let new = new.to_string();
                self.sent = text;
                Ok(Some(new))
            }
            _ => Ok(None),
        }
    }
}

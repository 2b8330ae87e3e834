//! Tokenizers and chat templates.
//!
//! Sources: `tokenizer.json` (+ `tokenizer_config.json`), GGUF metadata (byte-level BPE as SmolLM2/Qwen use it,
//! SentencePiece as Gemma uses it), and SentencePiece `tokenizer.model` files without a tokenizer.json.
//! All of them end up as one `tokenizers::Tokenizer`, so encoding behaves the same whatever the source.
mod chat;
mod gguf;
mod sentencepiece;

pub use chat::render_chat_template;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One chat message, as in `transformers`' `apply_chat_template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A tokenizer plus the special tokens and chat template the model was published with.
#[derive(Clone)]
pub struct Tokenizer {
    pub inner: tokenizers::Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    /// Whether `encode(.., add_special_tokens=true)` should prepend BOS (GGUF `tokenizer.ggml.add_bos_token`).
    pub add_bos_token: bool,
    /// Extra end-of-turn tokens that also stop generation (e.g. Gemma's `<end_of_turn>`).
    pub extra_eos_tokens: Vec<String>,
    /// Jinja chat template source, if the model ships one.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("pad_token", &self.pad_token)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Load `tokenizer.json`, and `tokenizer_config.json` next to it when present (special tokens, chat template).
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::file(path, format!("cannot load tokenizer: {e}")))?;
        let mut tok = Tokenizer {
            inner,
            bos_token: None,
            eos_token: None,
            pad_token: None,
            add_bos_token: false,
            extra_eos_tokens: vec![],
            chat_template: None,
        };
        if let Some(dir) = path.parent() {
            let cfg = dir.join("tokenizer_config.json");
            if cfg.exists() {
                tok.apply_tokenizer_config(&cfg)?;
            }
        }
        Ok(tok)
    }

    /// A model directory's tokenizer: `tokenizer.json`, else a SentencePiece `tokenizer.model`, with
    /// `tokenizer_config.json` applied either way.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.exists() {
            return Self::from_tokenizer_json(&json);
        }
        let sp = dir.join("tokenizer.model");
        if sp.exists() {
            let mut t = Self::from_sentencepiece_model(&sp)?;
            let cfg = dir.join("tokenizer_config.json");
            if cfg.exists() {
                t.apply_tokenizer_config(&cfg)?;
            }
            return Ok(t);
        }
        Err(Error::file(dir, "no tokenizer.json or tokenizer.model"))
    }

    /// Read special tokens and the chat template from a `tokenizer_config.json`.
    pub fn apply_tokenizer_config(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        // Special tokens are either a plain string or an AddedToken object {"content": ...}.
        let token = |key: &str| -> Option<String> {
            match v.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
                _ => None,
            }
        };
        self.bos_token = token("bos_token").or(self.bos_token.take());
        self.eos_token = token("eos_token").or(self.eos_token.take());
        self.pad_token = token("pad_token").or(self.pad_token.take());
        if let Some(b) = v.get("add_bos_token").and_then(|b| b.as_bool()) {
            self.add_bos_token = b;
        }
        match v.get("chat_template") {
            Some(serde_json::Value::String(s)) => self.chat_template = Some(s.clone()),
            // Some models publish a list of named templates; the one called "default" is what transformers uses.
            Some(serde_json::Value::Array(list)) => {
                for t in list {
                    if t.get("name").and_then(|n| n.as_str()) == Some("default") {
                        self.chat_template = t.get("template").and_then(|s| s.as_str()).map(str::to_string);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// Ids that end a generation: EOS plus model-specific end-of-turn tokens.
    pub fn stop_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_token_id().into_iter().collect();
        for t in &self.extra_eos_tokens {
            if let Some(id) = self.token_to_id(t) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// Encode text. With `add_special_tokens`, BOS is prepended where the model expects it.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens)?;
        let mut ids = enc.get_ids().to_vec();
        if add_special_tokens && self.add_bos_token {
            if let Some(bos) = self.bos_token_id() {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        Ok(self.inner.decode(ids, skip_special_tokens)?)
    }
}

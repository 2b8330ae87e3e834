//! TEMPORARY: byte-level BPE from GGUF via candle until the full converter lands.
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::tokenizer::TokenizerFromGguf;

use super::Tokenizer;
use crate::{Error, Result};

impl Tokenizer {
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_gguf(content).map_err(|e| Error::file(path, e))?;
        let tok = |k: &str| {
            content
                .metadata
                .get(k)
                .and_then(|v| v.to_u32().ok())
                .and_then(|id| inner.id_to_token(id))
        };
        let chat_template = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        Ok(Tokenizer {
            bos_token: tok("tokenizer.ggml.bos_token_id"),
            eos_token: tok("tokenizer.ggml.eos_token_id"),
            pad_token: tok("tokenizer.ggml.padding_token_id"),
            add_bos_token: content
                .metadata
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(false),
            extra_eos_tokens: vec![],
            chat_template,
            inner,
        })
    }
    pub fn from_sentencepiece_model(path: &Path) -> Result<Self> {
        Err(Error::file(
            path,
            "tokenizer.model support is not built yet",
        ))
    }
}

impl Tokenizer {
    pub fn apply_chat_template(
        &self,
        messages: &[super::Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tpl = self
            .chat_template
            .as_ref()
            .ok_or_else(|| Error::msg("this model has no chat template"))?;
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_template("chat", tpl)
            .map_err(|e| Error::msg(format!("chat template: {e}")))?;
        let t = env
            .get_template("chat")
            .map_err(|e| Error::msg(e.to_string()))?;
        t.render(minijinja::context! { messages => minijinja::Value::from(minijinja::value::Serde(messages)), add_generation_prompt => add_generation_prompt, bos_token => self.bos_token.clone(), eos_token => self.eos_token.clone() })
            .map_err(|e| Error::msg(format!("chat template: {e}")))
    }
}

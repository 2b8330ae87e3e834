//! The one decoder and everything it is built from.
pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod gguf_config;
pub mod kv_cache;
pub mod linear;
pub mod load;
pub mod lora_slot;
pub mod mlp;
pub mod norm;
pub mod rope;

/// Frozen weights are defined with their kernels, one layer down.
pub use crate::quant::FrozenWeight;
pub use config::{Activation, Arch, LayerKind, ModelConfig, RopeScaling};
pub use decoder::{Decoder, Embedding, PackedGroup};
pub use kv_cache::KvCache;
pub use linear::Linear;
pub use load::WeightSource;
pub use lora_slot::{AdapterState, LoraLayer};

use std::path::Path;

use candle_core::{DType, Device};

use crate::device::{pick_device, DeviceChoice, PickedDevice};
use crate::hub::{self, ModelFiles};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// How to load a model.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    pub device: DeviceChoice,
    /// Activation dtype; default f32 on CPU, f16 on CUDA.
    pub dtype: Option<String>,
    /// Dequantize GGUF weights to dense at load time (exact transformers parity, more memory).
    pub dequantize: bool,
    /// Quantize a dense (safetensors) model's projections to 4 bits at load time, as QLoRA's `load_in_4bit`.
    pub load_in_4bit: bool,
}

/// A decoder together with its tokenizer: what notebooks, trainers and the CLI hold.
pub struct Model {
    /// What the user asked for (alias, path or hub id).
    pub name: String,
    pub files: ModelFiles,
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("files", &self.files)
            .field("config", &self.decoder.config)
            .finish()
    }
}

impl Model {
    /// Load by alias (`smollm2-135m`, `gemma3-270m`), local path (directory or .gguf) or hub id.
    pub fn load(name: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let name = name.as_ref();
        let name = name
            .to_str()
            .ok_or_else(|| Error::file(name, "the model path is not valid UTF-8"))?;
        let files = hub::resolve(name)?;
        Self::from_files(name, files, opts)
    }

    pub fn from_files(name: &str, files: ModelFiles, opts: &LoadOptions) -> Result<Self> {
        let PickedDevice {
            device,
            dtype: default_dtype,
        } = pick_device(opts.device)?;
        let dtype = match opts.dtype.as_deref() {
            None => default_dtype,
            Some("f32" | "float32") => DType::F32,
            Some("f16" | "float16") => DType::F16,
            Some("bf16" | "bfloat16") => DType::BF16,
            Some(other) => return Err(Error::Input(format!("unknown dtype `{other}` (use f32, f16 or bf16)"))),
        };
        let (mut decoder, tokenizer) = match &files {
            ModelFiles::Gguf(path) => {
                let mut src = WeightSource::gguf(path)?;
                if let WeightSource::Gguf { dense, .. } = &mut src {
                    *dense = opts.dequantize;
                }
                let WeightSource::Gguf { content, .. } = &src else {
                    unreachable!("gguf() returns a Gguf source")
                };
                let cfg = ModelConfig::from_gguf(content, path)?;
                let tokenizer = Tokenizer::from_gguf(content, path)?;
                (Decoder::load(&cfg, &mut src, &device, dtype)?, tokenizer)
            }
            ModelFiles::Dir(dir) => {
                let cfg = ModelConfig::from_config_json(&dir.join("config.json"))?;
                let tokenizer = Tokenizer::from_dir(dir)?;
                let mut src = WeightSource::safetensors_dir(dir)?;
                (Decoder::load(&cfg, &mut src, &device, dtype)?, tokenizer)
            }
        };
        if opts.load_in_4bit {
            decoder.quantize_linears(candle_core::quantized::GgmlDType::Q4K)?;
        }
        let (tv, mv) = (tokenizer.vocab_size(), decoder.config.vocab_size);
        if tv > mv {
            return Err(Error::Input(format!(
                "tokenizer has {tv} tokens but the model's embedding has only {mv} rows: they do not belong together"
            )));
        }
        Ok(Model {
            name: name.to_string(),
            files,
            decoder,
            tokenizer,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.decoder.config
    }

    pub fn device(&self) -> &Device {
        &self.decoder.device
    }

    /// The id that fills padding, for batching in every trainer and for generation: the tokenizer's pad token, else
    /// the config's `pad_token_id`, else EOS (the tokenizer's, then the config's first), else 0. TRL's trainers take
    /// the tokenizer's pad token and fall back to its EOS; transformers' `generate` takes the config's
    /// `pad_token_id` and falls back to `eos_token_id[0]`. Pad positions are always masked, so the choice changes no
    /// result; it only has to be a valid id.
    pub fn pad_token_id(&self) -> u32 {
        let cfg = self.config();
        self.tokenizer
            .pad_token_id()
            .or(cfg.pad_token_id)
            .or(self.tokenizer.eos_token_id())
            .or(cfg.eos_token_ids.first().copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use tokenizers::models::wordlevel::WordLevel;

    use super::*;

    /// The tiny Llama fixture with a word-level tokenizer "t0" … "t255" and no special tokens (also used by
    /// `lora`'s tests).
    pub(crate) fn tiny() -> Model {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny/llama");
        let cfg = ModelConfig::from_config_json(&dir.join("config.json")).unwrap();
        let mut src = WeightSource::safetensors_dir(&dir).unwrap();
        let decoder = Decoder::load(&cfg, &mut src, &Device::Cpu, DType::F32).unwrap();
        let vocab = (0..256u32).map(|i| (format!("t{i}"), i)).collect();
        let wl = WordLevel::builder()
            .vocab(vocab)
            .unk_token("t0".into())
            .build()
            .unwrap();
        let tokenizer = Tokenizer {
            inner: tokenizers::Tokenizer::new(wl),
            bos_token: None,
            eos_token: None,
            pad_token: None,
            add_bos_token: false,
            extra_eos_tokens: vec![],
            chat_template: None,
        };
        Model {
            name: "llama".into(),
            files: ModelFiles::Dir(dir),
            decoder,
            tokenizer,
        }
    }

    #[test]
    fn pad_token_falls_back_from_tokenizer_pad_to_config_pad_to_eos() {
        let mut m = tiny();
        m.tokenizer.pad_token = Some("t7".into());
        m.tokenizer.eos_token = Some("t9".into());
        m.decoder.config.pad_token_id = Some(5);
        m.decoder.config.eos_token_ids = vec![11, 12];
        assert_eq!(m.pad_token_id(), 7, "the tokenizer's pad token first");
        m.tokenizer.pad_token = Some("not-in-the-vocabulary".into());
        assert_eq!(m.pad_token_id(), 5, "a pad token the vocabulary lacks counts as none");
        m.tokenizer.pad_token = None;
        assert_eq!(m.pad_token_id(), 5, "then the config's pad_token_id");
        m.decoder.config.pad_token_id = None;
        assert_eq!(m.pad_token_id(), 9, "then the tokenizer's EOS");
        m.tokenizer.eos_token = None;
        assert_eq!(m.pad_token_id(), 11, "then the config's first EOS");
        m.decoder.config.eos_token_ids.clear();
        assert_eq!(m.pad_token_id(), 0, "else 0");
    }
}

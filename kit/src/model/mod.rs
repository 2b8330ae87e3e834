//! The one decoder and everything it is built from.
pub mod attention;
pub mod config;
pub mod decoder;
pub mod gguf_config;
pub mod linear;
pub mod load;
pub mod lora_slot;
pub mod mlp;
pub mod norm;
pub mod rope;

/// Frozen weights are defined with their kernels, one layer down.
pub use crate::quant::FrozenWeight;
pub use config::{Activation, Arch, LayerKind, ModelConfig, RopeScaling};
pub use decoder::{Decoder, Embedding, KvCache};
pub use linear::Linear;
pub use load::WeightSource;
pub use lora_slot::{AdapterState, LoraLayer};

use candle_core::{DType, Device};

use crate::device::{pick_device, DeviceChoice};
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
    pub fn load(name: &str, opts: &LoadOptions) -> Result<Self> {
        let files = hub::resolve(name)?;
        Self::from_files(name, files, opts)
    }

    pub fn from_files(name: &str, files: ModelFiles, opts: &LoadOptions) -> Result<Self> {
        let (device, default_dtype) = pick_device(opts.device)?;
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
}

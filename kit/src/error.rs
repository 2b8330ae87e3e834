//! Typed errors for the things a caller may want to act on; everything else is `anyhow` at the edges.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file we needed is missing, unreadable or malformed. `field` names the key or tensor at fault.
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },

    /// A required field is absent or has the wrong type in a config/metadata file.
    #[error("{path}: field `{field}`: {msg}")]
    Field { path: PathBuf, field: String, msg: String },

    /// The model architecture is not one kit implements.
    #[error("{path}: unsupported architecture `{arch}` (kit supports: llama, qwen2, qwen3, gemma, gemma2, gemma3)")]
    UnsupportedArch { path: PathBuf, arch: String },

    /// A model name/alias/path could not be resolved to files.
    #[error("could not find model `{name}`:\n{tried}")]
    ModelNotFound { name: String, tried: String },

    /// Input that does not fit the model (too long, wrong shape, bad token id).
    #[error("{0}")]
    Input(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),

    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
    pub fn field(path: impl Into<PathBuf>, field: impl Into<String>, msg: impl std::fmt::Display) -> Self {
        Error::Field {
            path: path.into(),
            field: field.into(),
            msg: msg.to_string(),
        }
    }
    pub fn msg(msg: impl std::fmt::Display) -> Self {
        Error::Msg(msg.to_string())
    }
}

impl From<tokenizers::Error> for Error {
    fn from(e: tokenizers::Error) -> Self {
        Error::Msg(format!("tokenizer: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Msg(format!("json: {e}"))
    }
}

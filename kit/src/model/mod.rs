//! The one decoder and everything it is built from.
pub mod attention;
pub mod config;
pub mod decoder;
pub mod gguf_config;
pub mod linear;
pub mod load;
pub mod mlp;
pub mod norm;
pub mod rope;

pub use config::{Activation, Arch, LayerKind, ModelConfig, RopeScaling};
pub use decoder::{Decoder, Embedding, KvCache};
pub use linear::{FrozenWeight, Linear};
pub use load::WeightSource;

//! The one decoder and everything it is built from.
pub mod config;
pub mod linear;

pub use config::{Activation, Arch, LayerKind, ModelConfig, RopeScaling};
pub use linear::{FrozenWeight, Linear};

//! The gated feed-forward block: down(act(gate(x)) * up(x)).
use candle_core::Tensor;

use super::config::Activation;
use super::linear::Linear;
use crate::Result;

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?;
        let gate = match self.act {
            Activation::Silu => gate.silu()?,
            Activation::GeluTanh => gate.gelu()?,
            Activation::Gelu => gate.gelu_erf()?,
        };
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

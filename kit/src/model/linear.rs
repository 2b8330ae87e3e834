//! The only place weights are applied: a frozen base (dense or quantized) plus, later, an optional LoRA adapter.
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::Tensor;

use crate::Result;

/// A frozen weight of shape (out_features, in_features).
#[derive(Debug, Clone)]
pub enum FrozenWeight {
    /// A dense f32/f16/bf16 tensor (never a `Var`).
    Dense(Tensor),
    /// A GGML-quantized tensor kept quantized in memory.
    Quantized(Arc<QTensor>),
}

impl FrozenWeight {
    pub fn out_features(&self) -> usize {
        match self {
            FrozenWeight::Dense(w) => w.dims()[0],
            FrozenWeight::Quantized(q) => q.shape().dims()[0],
        }
    }
    pub fn device(&self) -> candle_core::Device {
        match self {
            FrozenWeight::Dense(w) => w.device().clone(),
            FrozenWeight::Quantized(q) => q.device(),
        }
    }
    pub fn in_features(&self) -> usize {
        match self {
            FrozenWeight::Dense(w) => w.dims()[1],
            FrozenWeight::Quantized(q) => q.shape().dims()[1],
        }
    }
}

/// y = x Wᵀ + b with W frozen, plus an optional LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: FrozenWeight,
    pub bias: Option<Tensor>,
    /// Module name in HF terms (e.g. `model.layers.0.self_attn.q_proj`), for LoRA targeting and PEFT keys.
    pub name: String,
    pub lora: Option<crate::lora::LoraLayer>,
}

impl Linear {
    pub fn new(weight: FrozenWeight, bias: Option<Tensor>, name: impl Into<String>) -> Self {
        Linear {
            weight,
            bias,
            name: name.into(),
            lora: None,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The base never enters the autograd graph: gradients flow to x only (see quant.rs).
        // In training, the first projections see inputs without a graph yet; they still take the exact path so
        // that the loss is the one a dense dequantized base would give.
        let training = self.lora.as_ref().is_some_and(|l| l.is_training());
        let mut y = crate::quant::frozen_linear_with(x, &self.weight, training)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(y.dtype())?)?;
        }
        match &self.lora {
            Some(l) if l.is_enabled() => Ok((y + l.forward(x)?)?),
            _ => Ok(y),
        }
    }

    /// Number of frozen parameters (weight and bias).
    pub fn num_parameters(&self) -> usize {
        self.weight.out_features() * self.weight.in_features() + self.bias.as_ref().map_or(0, |b| b.elem_count())
    }
}

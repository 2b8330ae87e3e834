//! The only place weights are applied: a frozen base (dense or quantized) plus, later, an optional LoRA adapter.
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Tensor};

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
    pub fn in_features(&self) -> usize {
        match self {
            FrozenWeight::Dense(w) => w.dims()[1],
            FrozenWeight::Quantized(q) => q.shape().dims()[1],
        }
    }
}

/// y = x Wᵀ + b with W frozen.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: FrozenWeight,
    pub bias: Option<Tensor>,
    /// Module name in HF terms (e.g. `model.layers.0.self_attn.q_proj`), for LoRA targeting and PEFT keys.
    pub name: String,
}

impl Linear {
    pub fn new(weight: FrozenWeight, bias: Option<Tensor>, name: impl Into<String>) -> Self {
        Linear {
            weight,
            bias,
            name: name.into(),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            FrozenWeight::Dense(w) => x.broadcast_matmul(&w.t()?)?,
            FrozenWeight::Quantized(q) => {
                // QMatMul::from_arc picks the dense path for f16/f32 GGUF tensors.
                let mm = QMatMul::from_arc(q.clone())?;
                let dtype = x.dtype();
                mm.forward(&x.to_dtype(candle_core::DType::F32)?)?.to_dtype(dtype)?
            }
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

//! The only place weights are applied: a frozen base (dense or quantized) plus, once attached, a LoRA adapter.
use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::lora_slot::{AdapterState, LoraLayer};
use crate::quant::FrozenWeight;
use crate::{Error, Result};

/// y = x Wᵀ + b with W frozen, plus an optional LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: FrozenWeight,
    pub bias: Option<Tensor>,
    /// Module name in HF terms (e.g. `model.layers.0.self_attn.q_proj`), for LoRA targeting and PEFT keys.
    pub name: String,
    /// This layer's A and B, when the adapter targets it.
    pub lora: Option<LoraLayer>,
    /// The switches of the adapter attached to the model. Every layer gets them, targeted or not: in training mode
    /// each frozen layer must multiply exactly, including those with no adapter and no graph upstream.
    pub adapter: Option<Arc<AdapterState>>,
    /// A dense copy of a quantized `weight` (the same values: dequantizing is exact), kept for a layer that is
    /// multiplied by many rows at once — the LM head, whose rows are the whole vocabulary. Training (exact
    /// products) and prefill then run the f32 GEMM instead of dequantizing W at every forward and backward, or
    /// candle's row-by-row quantized kernel. Decoding a few rows still reads the quantized weight: it is bound by
    /// reading W, and the copy is 3.8× the bytes of a Q8_0 head (SmolLM2: 113 vs 30 MB per token).
    pub dense_copy: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: FrozenWeight, bias: Option<Tensor>, name: impl Into<String>) -> Self {
        Linear {
            weight,
            bias,
            name: name.into(),
            lora: None,
            adapter: None,
            dense_copy: None,
        }
    }

    /// Keep a dense copy of a quantized weight (see [`Linear::dense_copy`]); a dense weight is left as it is.
    pub fn keep_dense_copy(&mut self, dtype: DType) -> Result<()> {
        if let FrozenWeight::Quantized(_) = self.weight {
            self.dense_copy = Some(crate::quant::dense_weight(&self.weight, dtype)?);
        }
        Ok(())
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward_frozen(x, x.track_op())?;
        let Some(lora) = &self.lora else { return Ok(y) };
        let state = self.adapter.as_deref().ok_or_else(|| {
            Error::msg(format!(
                "{}: LoRA weights without the adapter's switches (attach adapters with kit::lora)",
                self.name
            ))
        })?;
        if !state.is_enabled() {
            return Ok(y);
        }
        Ok((y + lora.forward(x, state)?)?)
    }

    /// The frozen part x·Wᵀ + b alone (no LoRA), multiplied as [`Linear::forward`] multiplies an input that carries
    /// a gradient when `as_tracked` is set. The gradient reaches `x` only if `x` itself carries a graph.
    pub fn forward_frozen(&self, x: &Tensor, as_tracked: bool) -> Result<Tensor> {
        // The base never enters the autograd graph: gradients flow to x only (see quant.rs). In training, every
        // layer takes the exact path — also the first projections, whose inputs carry no graph yet, and layers
        // without an adapter — so that the loss is the one a dense dequantized base would give.
        let exact = self.adapter.as_deref().is_some_and(AdapterState::is_exact) || as_tracked;
        let mut y = match (&self.dense_copy, &self.weight) {
            (Some(w), FrozenWeight::Quantized(q)) if !crate::quant::runs_quantized(x, q, exact)? => {
                crate::quant::frozen_linear_with(x, &FrozenWeight::Dense(w.clone()), exact)?
            }
            _ => crate::quant::frozen_linear_with(x, &self.weight, exact)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(y.dtype())?)?;
        }
        Ok(y)
    }

    /// W as a dense (out, in) tensor of `dtype`: the dense copy when one is kept, else W itself or W dequantized.
    pub fn dense_weight(&self, dtype: DType) -> Result<Tensor> {
        match &self.dense_copy {
            Some(w) => Ok(w.to_dtype(dtype)?),
            None => crate::quant::dense_weight(&self.weight, dtype),
        }
    }

    /// Number of frozen parameters (weight and bias).
    pub fn num_parameters(&self) -> usize {
        self.weight.out_features() * self.weight.in_features() + self.bias.as_ref().map_or(0, |b| b.elem_count())
    }
}

//! The only place weights are applied: a frozen base (dense or quantized) plus, once attached, a LoRA adapter.
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor};

use super::lora_slot::{AdapterState, LoraLayer};
use crate::bf16_gemm::Bf16Weight;
use crate::qgemv::tiled::TiledWeight;
use crate::quant::FrozenWeight;
use crate::{Error, Result};

/// Rows from which a product that need not be exact runs in bf16 under the `bf16` switch (evaluation, prefill); a
/// few decoded rows keep the matrix–vector kernels, which are bound by reading W, not by arithmetic.
const BF16_MIN_ROWS: usize = 32;

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
    /// W rounded and packed for bf16 products, made at the first one (training with `bf16`; see
    /// [`crate::bf16_gemm`]).
    bf16_weight: Arc<OnceLock<Bf16Weight>>,
    /// A Q4_1 or Q8_0 `weight` in the tiles of the AVX-512 VNNI decoding kernel, made at the first product that runs
    /// in a quantized kernel (see [`crate::qgemv::tiled`]).
    tiled_weight: Arc<OnceLock<TiledWeight>>,
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
            bf16_weight: Arc::default(),
            tiled_weight: Arc::default(),
        }
    }

    /// Drop the copies of W made for faster products (after W changed, e.g. a merged adapter).
    pub fn forget_weight_copies(&mut self) {
        self.bf16_weight = Arc::default();
        self.tiled_weight = Arc::default();
    }

    /// W in the tiles of the AVX-512 VNNI kernel, when `x · Wᵀ` runs in a quantized kernel and that one applies
    /// (made once).
    fn tiled_weight(&self, x: &Tensor, exact: bool) -> Result<Option<&TiledWeight>> {
        let FrozenWeight::Quantized(q) = &self.weight else {
            return Ok(None);
        };
        if !(crate::qgemv::tiled::applies(x, q) && crate::quant::runs_quantized(x, q, exact)?) {
            return Ok(None);
        }
        if let Some(w) = self.tiled_weight.get() {
            return Ok(Some(w));
        }
        let w = TiledWeight::new(q)?;
        Ok(Some(self.tiled_weight.get_or_init(|| w)))
    }

    /// ∂L/∂x of the frozen product for an upstream gradient `g` (…, out): g · W, in bf16 where the layer's exact
    /// products of `g` run so ([`Linear::forward_frozen`]), else with `dense` (W as a dense f32 tensor) when the
    /// caller holds it, or W made dense for this product.
    pub fn frozen_input_gradient(&self, g: &Tensor, dense: Option<&Tensor>) -> Result<Tensor> {
        if self.runs_bf16(g) {
            return self.bf16_weight()?.matmul(g);
        }
        match dense {
            Some(w) => crate::quant::matmul(g, w),
            None => crate::quant::matmul(g, &self.dense_weight(g.dtype())?),
        }
    }

    /// Whether this layer's exact products of `x` run in bf16 (the adapter's `bf16` switch, f32 input on the CPU).
    pub fn runs_bf16(&self, x: &Tensor) -> bool {
        self.adapter.as_deref().is_some_and(AdapterState::is_bf16) && x.device().is_cpu() && x.dtype() == DType::F32
    }

    /// W rounded and packed for bf16 products (made once, from the dense copy when there is one).
    fn bf16_weight(&self) -> Result<Bf16Weight> {
        if let Some(w) = self.bf16_weight.get() {
            return Ok(w.clone());
        }
        let w = Bf16Weight::new(&self.dense_weight(DType::F32)?)?;
        Ok(self.bf16_weight.get_or_init(|| w).clone())
    }

    /// Keep a dense copy of a quantized weight (see [`Linear::dense_copy`]); a dense weight is left as it is.
    pub fn keep_dense_copy(&mut self, dtype: DType) -> Result<()> {
        if let FrozenWeight::Quantized(_) = self.weight {
            self.dense_copy = Some(crate::quant::dense_weight(&self.weight, dtype)?);
        }
        Ok(())
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(lora), Some(state)) = (&self.lora, self.adapter.as_deref()) {
            if state.is_enabled() && state.is_training() {
                return self.forward_training(x, lora, state);
            }
        }
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

    /// y = x Wᵀ + b + s · ((x ⊙ m) Aᵀ) Bᵀ as one op (m: the dropout mask, if any), for training.
    ///
    /// The same forward as the frozen product plus [`LoraLayer::forward`], but candle's graph keeps only y, not the
    /// frozen product, (x A) B and its scaled copy beside it (three tensors of y's size per projection: half of a
    /// step's activations). Only x Aᵀ (r values a row) is kept for the backward, which is in closed form:
    ///   ∂B = (s·∂y)ᵀ (x_m Aᵀ),  ∂(x_m Aᵀ) = (s·∂y) B,  ∂A = ∂(x_m Aᵀ)ᵀ x_m,  ∂x = ∂y W + (∂(x_m Aᵀ) A) ⊙ m
    /// in the order candle's autograd would take them, so the numbers are the unfused path's.
    fn forward_training(&self, x: &Tensor, lora: &LoraLayer, state: &AdapterState) -> Result<Tensor> {
        use crate::quant::{matmul, matmul_t};
        let dtype = x.dtype();
        let (a, b) = state.weights(lora.slot)?;
        let (a_var, b_var) = (a.as_tensor(), b.as_tensor());
        let (a, b) = (a_var.detach().to_dtype(dtype)?, b_var.detach().to_dtype(dtype)?);
        let xd = x.detach();
        let mask = if lora.dropout > 0.0 {
            Some(state.dropout_mask(&xd, lora.dropout)?)
        } else {
            None
        };
        let xm = match &mask {
            Some(m) => (&xd * m)?,
            None => xd.clone(),
        };
        let xa = matmul_t(&xm, &a)?;
        let y = (self.forward_frozen(&xd, true)? + (matmul_t(&xa, &b)? * lora.scale)?)?;
        let weight = self.weight.clone();
        let dense = self.dense_copy.clone();
        let bf16 = if self.runs_bf16(x) {
            Some(self.bf16_weight()?)
        } else {
            None
        };
        let (scale, a_dtype, b_dtype) = (lora.scale, a_var.dtype(), b_var.dtype());
        let in_features = self.weight.in_features();
        let x_shape = x.shape().clone();
        let track_x = x.track_op();
        let err = |e: crate::Error| candle_core::Error::Msg(e.to_string());
        crate::autograd::with_backward3((x, a_var, b_var), y, "lora-linear", move |g| {
            let gs = (g * scale)?;
            let out = gs.dim(candle_core::D::Minus1)?;
            let rows = gs.elem_count() / out;
            let (gs2, xa2) = (
                gs.reshape((rows, out))?,
                xa.reshape((rows, xa.dim(candle_core::D::Minus1)?))?,
            );
            let db = gs2.t()?.matmul(&xa2)?; // (out, r)
            let dxa = gs2.matmul(&b)?; // (rows, r)
            let da = dxa.t()?.matmul(&xm.reshape((rows, in_features))?)?; // (r, in)
            let dx = if track_x {
                let frozen_dx = match (&bf16, &dense) {
                    (Some(w), _) => w.matmul(g).map_err(err)?,
                    (None, Some(w)) => matmul(g, &w.to_dtype(g.dtype())?).map_err(err)?,
                    (None, None) => {
                        matmul(g, &crate::quant::dense_weight(&weight, g.dtype()).map_err(err)?).map_err(err)?
                    }
                };
                let mut lora_dx = dxa.matmul(&a)?;
                if let Some(m) = &mask {
                    lora_dx = (lora_dx * m.reshape((rows, in_features))?)?;
                }
                Some((frozen_dx + lora_dx.reshape(&x_shape)?)?)
            } else {
                None
            };
            Ok((dx, Some(da.to_dtype(a_dtype)?), Some(db.to_dtype(b_dtype)?)))
        })
    }

    /// The frozen part x·Wᵀ + b alone (no LoRA), multiplied as [`Linear::forward`] multiplies an input that carries
    /// a gradient when `as_tracked` is set. The gradient reaches `x` only if `x` itself carries a graph.
    pub fn forward_frozen(&self, x: &Tensor, as_tracked: bool) -> Result<Tensor> {
        // The base never enters the autograd graph: gradients flow to x only (see quant.rs). In training, every
        // layer takes the exact path — also the first projections, whose inputs carry no graph yet, and layers
        // without an adapter — so that the loss is the one a dense dequantized base would give.
        let exact = self.adapter.as_deref().is_some_and(AdapterState::is_exact) || as_tracked;
        // Decoding's few rows against a Q4_1 or Q8_0 weight: the tiled kernel (the weight never enters the graph).
        let tiled = if x.track_op() {
            None
        } else {
            self.tiled_weight(x, exact)?
        };
        let mut y = match (&self.dense_copy, &self.weight, tiled) {
            _ if self.runs_bf16(x) && (exact || x.elem_count() / self.weight.in_features() >= BF16_MIN_ROWS) => {
                let w = self.bf16_weight()?;
                let y = w.matmul_t(&x.detach())?;
                // ∂L/∂x = bf16(∂L/∂y) · bf16(W), as autocast differentiates a bf16 linear layer.
                crate::autograd::with_backward(x, y, "frozen-linear-bf16", move |_, _, g| {
                    w.matmul(g).map_err(|e| candle_core::Error::Msg(e.to_string()))
                })?
            }
            (_, _, Some(tiled)) => tiled.matmul_t(x)?,
            (Some(w), FrozenWeight::Quantized(q), None) if !crate::quant::runs_quantized(x, q, exact)? => {
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

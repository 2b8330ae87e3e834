//! What a layer needs to run a LoRA adapter (Hu et al. 2021): its A and B, and the switches shared by the whole
//! adapter. Attaching, merging and the PEFT files live in `kit::lora`, which builds these.
//!
//! h = W x + scale · B A dropout(x). A and B are f32 `Var`s whatever the activation dtype. Dropout acts on the
//! adapter's input only, in training mode only, with masks drawn from a seeded generator so that a run can be
//! repeated exactly.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use candle_core::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::{Error, Result};

/// Flags shared by every layer of one model once an adapter is attached, targeted or not: switching the adapter off
/// turns the model back into the base model (the DPO/GRPO reference) without copying anything, and training mode
/// makes every frozen layer multiply exactly (see `Linear::forward`).
#[derive(Debug)]
pub struct AdapterState {
    enabled: AtomicBool,
    training: AtomicBool,
    /// Draws the dropout masks of every layer, in forward order.
    dropout_rng: Mutex<StdRng>,
}

impl AdapterState {
    /// Enabled, not training, dropout stream seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        AdapterState {
            enabled: AtomicBool::new(true),
            training: AtomicBool::new(false),
            dropout_rng: Mutex::new(dropout_rng(seed)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    pub fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }

    /// Restart the dropout masks' random stream from `seed`.
    pub fn reseed_dropout(&self, seed: u64) -> Result<()> {
        *self
            .dropout_rng
            .lock()
            .map_err(|_| Error::msg("dropout generator: poisoned lock"))? = dropout_rng(seed);
        Ok(())
    }

    /// Inverted dropout of `x`: each element kept with probability 1 − p and then scaled by 1/(1 − p).
    fn dropout(&self, x: &Tensor, p: f32) -> Result<Tensor> {
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = {
            let mut rng = self
                .dropout_rng
                .lock()
                .map_err(|_| Error::msg("dropout generator: poisoned lock"))?;
            (0..x.elem_count())
                .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), &Device::Cpu)?
            .to_device(x.device())?
            .to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

/// A stream of its own, so that changing the dropout rate does not change A's initialisation.
fn dropout_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)
}

/// One layer's adapter: A (r, in), B (out, r), the scale α/r (or α/√r), and the dropout rate on its input.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    pub dropout: f32,
}

impl LoraLayer {
    /// scale · B A x, computed in x's dtype, under the adapter's switches `state`.
    ///
    /// Outside training mode, and with no graph upstream, A and B enter as constants: inference then builds no
    /// autograd graph and keeps candle's fused kernels (like `torch.no_grad()` during generation).
    pub fn forward(&self, x: &Tensor, state: &AdapterState) -> Result<Tensor> {
        let dtype = x.dtype();
        let training = state.is_training();
        let x = if self.dropout > 0.0 && training {
            state.dropout(x, self.dropout)?
        } else {
            x.clone()
        };
        let (a, b) = if training || x.track_op() {
            (self.a.as_tensor().clone(), self.b.as_tensor().clone())
        } else {
            (self.a.as_tensor().detach(), self.b.as_tensor().detach())
        };
        let (a, b) = (a.to_dtype(dtype)?, b.to_dtype(dtype)?);
        let xa = crate::quant::matmul_t(&x, &a)?;
        Ok((crate::quant::matmul_t(&xa, &b)? * self.scale)?)
    }
}

//! What a layer needs to run a LoRA adapter (Hu et al. 2021): its A and B, and the switches shared by the whole
//! adapter. Attaching, merging and the PEFT files live in `kit::lora`, which builds these.
//!
//! h = W x + scale · B A dropout(x). A and B are f32 `Var`s whatever the activation dtype, held once for the whole
//! adapter in its [`AdapterState`] (a layer knows its slot there), so that the trainer can renew them all at once
//! (see [`AdapterState::renew_weights`]). Dropout acts on the adapter's input only, in training mode only, with masks
//! drawn from a seeded generator so that a run can be repeated exactly.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use candle_core::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::{Error, Result};

/// Flags shared by every layer of one model once an adapter is attached, targeted or not: switching the adapter off
/// turns the model back into the base model (the DPO/GRPO reference) without copying anything, and training mode
/// makes every frozen layer multiply exactly (see `Linear::forward`), as does exact mode on its own (for scoring with
/// the arithmetic a model was trained with). It also holds the A and B of every adapted layer.
#[derive(Debug)]
pub struct AdapterState {
    enabled: AtomicBool,
    training: AtomicBool,
    exact: AtomicBool,
    /// Draws the dropout masks of every layer, in forward order.
    dropout_rng: Mutex<StdRng>,
    /// (A, B) of each adapted layer, by slot ([`LoraLayer::slot`]).
    weights: RwLock<Vec<(Var, Var)>>,
    /// Recompute each decoder layer in the backward instead of keeping its activations (`gradient_checkpointing`).
    checkpointing: AtomicBool,
    /// Gradients of A and B found while recomputing checkpointed layers, (A or B, gradient), until
    /// [`AdapterState::add_checkpointed_gradients`] moves them into the step's gradients.
    checkpointed_grads: Mutex<Vec<(Tensor, Tensor)>>,
    /// Exact frozen products in bf16 with f32 sums (`TrainingArguments::bf16`, see [`crate::bf16_gemm`]).
    bf16: AtomicBool,
}

/// An adapter's switches: on or off (the base model), training (gradients, dropout, exact products), exact (exact
/// products without training).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterMode {
    pub enabled: bool,
    pub training: bool,
    pub exact: bool,
}

/// While alive, an adapter runs in the mode a scope asked for ([`AdapterState::scoped`]); dropped, it restores the
/// mode the adapter had before.
#[must_use = "the mode is restored as soon as the guard is dropped"]
#[derive(Debug)]
pub struct ModeGuard<'a> {
    state: &'a AdapterState,
    previous: AdapterMode,
}

impl Drop for ModeGuard<'_> {
    fn drop(&mut self) {
        self.state.set_mode(self.previous);
    }
}

impl AdapterState {
    /// Enabled, not training, dropout stream seeded from `seed`, no weights yet.
    pub fn new(seed: u64) -> Self {
        AdapterState {
            enabled: AtomicBool::new(true),
            training: AtomicBool::new(false),
            exact: AtomicBool::new(false),
            dropout_rng: Mutex::new(dropout_rng(seed)),
            weights: RwLock::new(Vec::new()),
            checkpointing: AtomicBool::new(false),
            checkpointed_grads: Mutex::new(Vec::new()),
            bf16: AtomicBool::new(false),
        }
    }

    /// Whether exact frozen products round both factors to bf16 and sum in f32 (see [`crate::bf16_gemm`]).
    pub fn is_bf16(&self) -> bool {
        self.bf16.load(Ordering::Relaxed)
    }

    /// bf16 frozen products (transformers' `bf16` training flag) on or off; LoRA's own products stay f32.
    pub fn set_bf16(&self, on: bool) {
        self.bf16.store(on, Ordering::Relaxed)
    }

    pub fn is_checkpointing(&self) -> bool {
        self.checkpointing.load(Ordering::Relaxed)
    }

    /// Gradient checkpointing (transformers' `gradient_checkpointing`): in training, decoder layers keep only their
    /// input and are run again in the backward. Gradients are then complete only through [`AdapterState::backward`].
    pub fn set_checkpointing(&self, on: bool) {
        self.checkpointing.store(on, Ordering::Relaxed)
    }

    /// Keep the gradients `grads` holds for any A or B (a checkpointed layer's recomputation found them).
    pub fn stash_checkpointed_gradients(&self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        let mut out = self
            .checkpointed_grads
            .lock()
            .map_err(|_| Error::msg("checkpointed gradients: poisoned lock"))?;
        for (a, b) in self.all_weights() {
            for v in [a.as_tensor(), b.as_tensor()] {
                if let Some(g) = grads.get(v) {
                    out.push((v.clone(), g.clone()));
                }
            }
        }
        Ok(())
    }

    /// Add the stashed gradients of checkpointed layers into `grads` (and forget them).
    pub fn add_checkpointed_gradients(&self, grads: &mut candle_core::backprop::GradStore) -> Result<()> {
        let stashed = std::mem::take(
            &mut *self
                .checkpointed_grads
                .lock()
                .map_err(|_| Error::msg("checkpointed gradients: poisoned lock"))?,
        );
        for (v, g) in stashed {
            let sum = match grads.remove(&v) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            grads.insert(&v, sum);
        }
        Ok(())
    }

    /// `loss.backward()`, with the gradients of checkpointed layers included: what a trainer must call.
    pub fn backward(&self, loss: &Tensor) -> Result<candle_core::backprop::GradStore> {
        let mut grads = loss.backward()?;
        self.add_checkpointed_gradients(&mut grads)?;
        Ok(grads)
    }

    /// A seed drawn from the dropout stream (one draw).
    pub fn draw_dropout_seed(&self) -> Result<u64> {
        Ok(self
            .dropout_rng
            .lock()
            .map_err(|_| Error::msg("dropout generator: poisoned lock"))?
            .random::<u64>())
    }

    /// Draw dropout masks from a stream seeded with `seed` while `f` runs, then go on with the adapter's own stream.
    pub fn with_dropout_seed<T>(&self, seed: u64, f: impl FnOnce() -> T) -> Result<T> {
        let poisoned = |_| Error::msg("dropout generator: poisoned lock");
        let own = std::mem::replace(
            &mut *self.dropout_rng.lock().map_err(poisoned)?,
            StdRng::seed_from_u64(seed),
        );
        let out = f();
        *self.dropout_rng.lock().map_err(poisoned)? = own;
        Ok(out)
    }

    /// Hold a layer's A and B; returns the slot the layer reads them from.
    pub fn push_weights(&self, a: Var, b: Var) -> usize {
        let mut w = self.weights.write().unwrap_or_else(|e| e.into_inner());
        w.push((a, b));
        w.len() - 1
    }

    /// (A, B) of `slot`.
    pub fn weights(&self, slot: usize) -> Result<(Var, Var)> {
        let w = self.weights.read().unwrap_or_else(|e| e.into_inner());
        w.get(slot)
            .cloned()
            .ok_or_else(|| Error::msg(format!("LoRA slot {slot} of {}: no such layer", w.len())))
    }

    /// (A, B) of every slot, in order.
    pub fn all_weights(&self) -> Vec<(Var, Var)> {
        self.weights.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace every A and B by a new `Var` holding the same values, made by the code that calls this.
    ///
    /// Why: candle tells tensors apart in the backward pass by an id drawn from a counter in candle itself, and
    /// evcxr links a separate copy of kit and candle, counter included, into every notebook cell. A `Var` made in
    /// the cell that attached the adapter can therefore carry the same id as a tensor that the training cell
    /// creates, and the backward pass would then confuse the two. The trainer calls this as it starts, so that its
    /// trainable tensors and its graph share one counter. In a single program it only copies the values.
    pub fn renew_weights(&self) -> Result<()> {
        let mut w = self.weights.write().unwrap_or_else(|e| e.into_inner());
        for (a, b) in w.iter_mut() {
            *a = renewed(a)?;
            *b = renewed(b)?;
        }
        Ok(())
    }

    /// Set every A and B to `values[slot]`, in place (the same `Var`s), e.g. to start another run from a snapshot
    /// ([`crate::lora::Adapter::restore`]). The shapes must match the slots'.
    pub fn set_weights(&self, values: &[(Tensor, Tensor)]) -> Result<()> {
        let w = self.weights.read().unwrap_or_else(|e| e.into_inner());
        if values.len() != w.len() {
            return Err(Error::msg(format!(
                "adapter snapshot holds {} layers, this adapter {}",
                values.len(),
                w.len()
            )));
        }
        for (slot, ((a, b), (va, vb))) in w.iter().zip(values).enumerate() {
            if a.shape() != va.shape() || b.shape() != vb.shape() {
                return Err(Error::msg(format!(
                    "adapter snapshot slot {slot}: A {:?}, B {:?} where this adapter has A {:?}, B {:?}",
                    va.dims(),
                    vb.dims(),
                    a.dims(),
                    b.dims()
                )));
            }
        }
        // Every shape checked first, so that a mismatch changes nothing.
        for ((a, b), (va, vb)) in w.iter().zip(values) {
            // In place: the optimizer of a run in progress holds these `Var`s (a KL measured against a snapshot
            // swaps the values out and back mid-run), so new ones would leave it updating tensors the model no
            // longer reads.
            for (var, value) in [(a, va), (b, vb)] {
                // A value that is the variable itself (a snapshot of the live tensors) is already in place.
                if var.as_tensor().id() != value.id() {
                    var.set(value)?;
                }
            }
        }
        Ok(())
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

    /// Whether frozen layers multiply exactly: in training mode, or in exact mode.
    pub fn is_exact(&self) -> bool {
        self.is_training() || self.exact.load(Ordering::Relaxed)
    }

    pub fn set_exact(&self, exact: bool) {
        self.exact.store(exact, Ordering::Relaxed);
    }

    /// The three switches together.
    pub fn mode(&self) -> AdapterMode {
        AdapterMode {
            enabled: self.is_enabled(),
            training: self.is_training(),
            exact: self.exact.load(Ordering::Relaxed),
        }
    }

    /// Set the three switches together.
    pub fn set_mode(&self, mode: AdapterMode) {
        self.set_enabled(mode.enabled);
        self.set_training(mode.training);
        self.set_exact(mode.exact);
    }

    /// Set `mode` until the returned guard is dropped, then restore the mode there was before, also when the scope
    /// is left through `?` or a panic.
    pub fn scoped(&self, mode: AdapterMode) -> ModeGuard<'_> {
        let previous = self.mode();
        self.set_mode(mode);
        ModeGuard { state: self, previous }
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
        Ok((x * self.dropout_mask(x, p)?)?)
    }

    /// The mask [`AdapterState::dropout`] multiplies by: 0 or 1/(1 − p) per element of `x`, in x's dtype.
    pub fn dropout_mask(&self, x: &Tensor, p: f32) -> Result<Tensor> {
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
        Ok(Tensor::from_vec(mask, x.shape(), &Device::Cpu)?
            .to_device(x.device())?
            .to_dtype(x.dtype())?)
    }
}

/// A stream of its own, so that changing the dropout rate does not change A's initialisation.
fn dropout_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)
}

/// A new `Var` with `v`'s values (a copy: a `Var` made from a `Var` would be the same tensor).
pub fn renewed(v: &Var) -> Result<Var> {
    Ok(Var::from_tensor(&v.as_tensor().detach())?)
}

/// One layer's adapter: where its A (r, in) and B (out, r) are held, its rank, the scale α/r (or α/√r), and the
/// dropout rate on its input.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    /// Index of this layer's (A, B) in the adapter's [`AdapterState`].
    pub slot: usize,
    /// r: rows of A, columns of B.
    pub rank: usize,
    /// α/r, or α/√r with rsLoRA.
    pub scale: f64,
    /// Dropout rate on the adapter's input, in training mode.
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
        let (a, b) = state.weights(self.slot)?;
        let (a, b) = if training || x.track_op() {
            (a.as_tensor().clone(), b.as_tensor().clone())
        } else {
            (a.as_tensor().detach(), b.as_tensor().detach())
        };
        let (a, b) = (a.to_dtype(dtype)?, b.to_dtype(dtype)?);
        let xa = crate::quant::matmul_t(&x, &a)?;
        Ok((crate::quant::matmul_t(&xa, &b)? * self.scale)?)
    }
}

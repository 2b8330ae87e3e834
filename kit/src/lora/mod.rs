//! LoRA adapters (Hu et al. 2021) on frozen linear layers, configured and saved like PEFT.
//!
//! h = W x + (α / r) · B A dropout(x), with A: (r, in) drawn like PEFT's `kaiming_uniform_(a = √5)` — i.e.
//! U(−1/√in, 1/√in) — and B: (out, r) zeros, so training starts from the base model. With rsLoRA (Kalajdzievski 2023)
//! the scale is α / √r. A and B are f32 `Var`s whatever the activation dtype; the base weight is never a `Var`.
//! Dropout acts on the adapter's input only, in training mode only, with masks drawn from a seeded generator so that
//! a run can be repeated exactly.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::model::{Decoder, FrozenWeight, Linear};
use crate::{Error, Result};

mod config;
mod peft;

pub use config::{matches_name, LoraConfig, OneOrMany, Patterns, TargetModules};
pub use peft::{load, load_into};

/// Flags shared by every adapter layer of one model: switching the adapter off turns the model back into the base
/// model (the DPO/GRPO reference) without copying anything.
#[derive(Debug)]
pub struct AdapterState {
    enabled: AtomicBool,
    training: AtomicBool,
    /// Draws the dropout masks of every layer, in forward order.
    dropout_rng: Mutex<StdRng>,
}

impl AdapterState {
    fn new(seed: u64) -> Self {
        AdapterState {
            enabled: AtomicBool::new(true),
            training: AtomicBool::new(false),
            // A stream of its own, so that changing the dropout rate does not change A's initialisation.
            dropout_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)),
        }
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

/// One layer's adapter.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    pub dropout: f32,
    pub state: Arc<AdapterState>,
}

impl LoraLayer {
    pub fn is_enabled(&self) -> bool {
        self.state.enabled.load(Ordering::Relaxed)
    }

    pub fn is_training(&self) -> bool {
        self.state.training.load(Ordering::Relaxed)
    }

    /// (α/r) · B A x, computed in x's dtype.
    ///
    /// Outside training mode, and with no graph upstream, A and B enter as constants: inference then builds no
    /// autograd graph and keeps candle's fused kernels (like `torch.no_grad()` during generation).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let training = self.state.training.load(Ordering::Relaxed);
        let x = if self.dropout > 0.0 && training {
            self.state.dropout(x, self.dropout)?
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

/// The adapter attached to a model: its config, its layers' names and parameters, and the on/off switch.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub config: LoraConfig,
    pub state: Arc<AdapterState>,
    /// (module name, A, B) in layer order.
    pub params: Vec<(String, Var, Var)>,
    /// Recorded in adapter_config.json.
    pub base_model_name_or_path: String,
}

impl Adapter {
    pub fn enable(&self) {
        self.state.enabled.store(true, Ordering::Relaxed);
    }
    pub fn disable(&self) {
        self.state.enabled.store(false, Ordering::Relaxed);
    }
    pub fn is_enabled(&self) -> bool {
        self.state.enabled.load(Ordering::Relaxed)
    }
    /// Training mode: gradients reach A and B, and dropout is applied. Off (the default after loading), the
    /// adapter is a constant and inference builds no graph.
    pub fn set_training(&self, training: bool) {
        self.state.training.store(training, Ordering::Relaxed);
    }

    /// Restart the dropout masks' random stream from `seed` (the trainer does it every step, so that a resumed run
    /// draws the same masks as an uninterrupted one).
    pub fn reseed_dropout(&self, seed: u64) -> Result<()> {
        let mut rng = self
            .state
            .dropout_rng
            .lock()
            .map_err(|_| Error::msg("dropout generator: poisoned lock"))?;
        *rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        Ok(())
    }

    pub fn is_training(&self) -> bool {
        self.state.training.load(Ordering::Relaxed)
    }

    /// Run `f` with the adapter switched off (the reference model of DPO and GRPO), then restore it.
    pub fn with_disabled<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.is_enabled();
        self.disable();
        let out = f();
        if was {
            self.enable();
        }
        out
    }

    /// Every trainable tensor (A and B of each layer).
    pub fn vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flat_map(|(_, a, b)| [a.clone(), b.clone()])
            .collect()
    }

    pub fn num_trainable(&self) -> usize {
        self.params
            .iter()
            .map(|(_, a, b)| a.elem_count() + b.elem_count())
            .sum()
    }

    /// PEFT's summary line for this adapter on `decoder`.
    pub fn summary(&self, decoder: &Decoder) -> String {
        self.summary_with_base(decoder.num_parameters())
    }

    /// PEFT's summary line, given the number of frozen base parameters.
    pub fn summary_with_base(&self, base_params: usize) -> String {
        let trainable = self.num_trainable();
        let all = base_params + trainable;
        format!(
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            thousands(trainable),
            thousands(all),
            100.0 * trainable as f64 / all as f64
        )
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Attach fresh adapters (A random, B zero) to the targeted projections of `decoder`.
pub fn attach(decoder: &mut Decoder, config: &LoraConfig) -> Result<Adapter> {
    attach_to(decoder.linears_mut(), config)
}

/// Attach fresh adapters to the targeted layers among `linears` (any set of named layers, e.g. a decoder's
/// `linears_mut()`). A is drawn layer after layer, in the given order, from `config.init_seed`.
pub fn attach_to<'a>(linears: impl IntoIterator<Item = &'a mut Linear>, config: &LoraConfig) -> Result<Adapter> {
    config.validate()?;
    let linears: Vec<&mut Linear> = linears.into_iter().collect();
    let names: Vec<String> = linears.iter().map(|l| l.name.clone()).collect();
    config.check_targets(&names)?;
    let state = Arc::new(AdapterState::new(config.init_seed));
    let mut rng = StdRng::seed_from_u64(config.init_seed);
    let mut params = Vec::new();
    for linear in linears {
        if !config.targets(&linear.name)? {
            continue;
        }
        if linear.lora.is_some() {
            return Err(Error::Input(format!("{} already has an adapter", linear.name)));
        }
        let (r, _, scale) = config.rank_alpha_scale(&linear.name)?;
        let (out, inp) = (linear.weight.out_features(), linear.weight.in_features());
        let device = linear.weight.device();
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..r * inp).map(|_| rng.random_range(-bound..bound)).collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (r, inp), &Device::Cpu)?.to_device(&device)?)?;
        let b = Var::zeros((out, r), DType::F32, &device)?;
        linear.lora = Some(LoraLayer {
            a: a.clone(),
            b: b.clone(),
            scale,
            dropout: config.lora_dropout,
            state: state.clone(),
        });
        params.push((linear.name.clone(), a, b));
    }
    if params.is_empty() {
        return Err(Error::Input(format!(
            "LoRA target_modules {:?} select no layer of this model",
            config.target_modules
        )));
    }
    Ok(Adapter {
        config: config.clone(),
        state,
        params,
        base_model_name_or_path: String::new(),
    })
}

/// Fold each adapter into its base weight (W ← W + scale · B A) and remove it. A quantized base becomes dense f32
/// (re-quantizing would lose most of a small update); a dense base keeps its dtype.
pub fn merge(decoder: &mut Decoder) -> Result<()> {
    for linear in decoder.linears_mut() {
        merge_linear(linear)?;
    }
    Ok(())
}

pub fn merge_linear(linear: &mut Linear) -> Result<()> {
    let Some(l) = linear.lora.take() else { return Ok(()) };
    let w = crate::quant::dense_weight(&linear.weight, DType::F32)?;
    let delta = (l.b.as_tensor().matmul(l.a.as_tensor())? * l.scale)?;
    let dtype = match &linear.weight {
        FrozenWeight::Dense(t) => t.dtype(),
        FrozenWeight::Quantized(_) => DType::F32,
    };
    linear.weight = FrozenWeight::Dense((w + delta)?.to_dtype(dtype)?);
    Ok(())
}

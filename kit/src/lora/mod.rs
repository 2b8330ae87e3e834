//! LoRA adapters (Hu et al. 2021) on frozen linear layers, configured, attached, merged and saved like PEFT.
//!
//! h = W x + (α / r) · B A dropout(x), with A: (r, in) drawn like PEFT's `kaiming_uniform_(a = √5)` — i.e.
//! U(−1/√in, 1/√in) — and B: (out, r) zeros, so training starts from the base model. With rsLoRA (Kalajdzievski 2023)
//! the scale is α / √r. What a layer runs (A, B, the shared switches) is `kit::model::lora_slot`.
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::model::{Decoder, FrozenWeight, Linear, Model};
use crate::{Error, Result};

mod config;
mod peft;

pub use crate::model::lora_slot::{renewed, AdapterMode, AdapterState, LoraLayer, ModeGuard};
pub use config::{matches_name, LoraConfig, OneOrMany, Patterns, TargetModules};
pub use peft::{load, load_into};

/// The adapter attached to a model: its config, its layers' names, and the state its layers share (the on/off
/// switch, training mode, and every A and B).
#[derive(Debug, Clone)]
pub struct Adapter {
    pub config: LoraConfig,
    pub state: Arc<AdapterState>,
    /// Names of the adapted modules, in layer order (slot order in `state`).
    pub modules: Vec<String>,
    /// Recorded in adapter_config.json.
    pub base_model_name_or_path: String,
}

/// Puts one of the adapter's switches back as it was when dropped ([`Adapter::checkpointing_scope`],
/// [`Adapter::bf16_scope`]).
#[must_use = "the switch is restored as soon as the guard is dropped"]
pub struct SwitchGuard<'a> {
    state: &'a AdapterState,
    previous: bool,
    set: fn(&AdapterState, bool),
}

impl Drop for SwitchGuard<'_> {
    fn drop(&mut self) {
        (self.set)(self.state, self.previous);
    }
}

/// The values of an adapter's A and B at one moment ([`Adapter::snapshot`]).
#[derive(Debug, Clone)]
pub struct AdapterSnapshot {
    /// (A, B) by slot.
    pub weights: Vec<(Tensor, Tensor)>,
}

impl Adapter {
    /// (module name, A, B) of each adapted layer, in layer order.
    pub fn params(&self) -> Vec<(String, Var, Var)> {
        self.modules
            .iter()
            .cloned()
            .zip(self.state.all_weights())
            .map(|(name, (a, b))| (name, a, b))
            .collect()
    }

    /// Give every A and B a new `Var` with the same values. The trainer does this as it starts, which is what lets
    /// a notebook attach the adapter in one cell and train in a later one (see [`AdapterState::renew_weights`]);
    /// `Var`s taken from [`Adapter::vars`] before then no longer belong to the model.
    pub fn renew_vars(&self) -> Result<()> {
        self.state.renew_weights()
    }

    /// A copy of every A and B as they are now, to come back to with [`Adapter::restore`]: several runs from one
    /// starting adapter (notebook 07 trains four DPO runs from 02's SFT adapter) without loading the model again.
    pub fn snapshot(&self) -> Result<AdapterSnapshot> {
        let weights = self
            .state
            .all_weights()
            .iter()
            .map(|(a, b)| Ok((a.as_tensor().copy()?, b.as_tensor().copy()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(AdapterSnapshot { weights })
    }

    /// Set every A and B back to the values of `snapshot` (taken from this adapter, or one of the same shape).
    pub fn restore(&self, snapshot: &AdapterSnapshot) -> Result<()> {
        self.state.set_weights(&snapshot.weights)
    }

    pub fn enable(&self) {
        self.state.set_enabled(true);
    }
    pub fn disable(&self) {
        self.state.set_enabled(false);
    }
    pub fn is_enabled(&self) -> bool {
        self.state.is_enabled()
    }
    /// Training mode: gradients reach A and B, dropout is applied, and every frozen layer of the model multiplies
    /// exactly (a quantized base as its dense dequantization). Off (the default after loading), the adapter is a
    /// constant, inference builds no graph and takes the fastest kernels.
    pub fn set_training(&self, training: bool) {
        self.state.set_training(training);
    }

    /// Exact mode: every frozen layer multiplies exactly, as in training, but without gradients or dropout. Then a
    /// forward pass gives the same numbers whatever else is in its batch (the fastest kernels switch with the row
    /// count, and candle's quantized ones round the activations to 8 bits), and the numbers training saw — what a
    /// reward model wants of its scores.
    pub fn set_exact(&self, exact: bool) {
        self.state.set_exact(exact);
    }

    /// Gradient checkpointing on or off until the guard is dropped (the trainer sets `gradient_checkpointing` so);
    /// see [`crate::model::checkpoint`]. While on, take gradients with [`Adapter::backward`].
    pub fn checkpointing_scope(&self, on: bool) -> SwitchGuard<'_> {
        self.switch_scope(on, AdapterState::is_checkpointing, AdapterState::set_checkpointing)
    }

    /// bf16 frozen products on or off until the guard is dropped (the trainer sets `bf16` so): in training and
    /// exact mode, and for products of many rows otherwise (evaluation, prefill), the frozen base multiplies
    /// bf16-rounded factors with f32 sums (see [`crate::bf16_gemm`]).
    pub fn bf16_scope(&self, on: bool) -> SwitchGuard<'_> {
        self.switch_scope(on, AdapterState::is_bf16, AdapterState::set_bf16)
    }

    /// One switch (read by `get`, written by `set`) set to `on` until the guard is dropped.
    fn switch_scope(&self, on: bool, get: fn(&AdapterState) -> bool, set: fn(&AdapterState, bool)) -> SwitchGuard<'_> {
        let previous = get(&self.state);
        set(&self.state, on);
        SwitchGuard {
            state: &self.state,
            previous,
            set,
        }
    }

    /// `loss.backward()` with the gradients of checkpointed layers added (the same as `loss.backward()` otherwise).
    pub fn backward(&self, loss: &candle_core::Tensor) -> Result<candle_core::backprop::GradStore> {
        self.state.backward(loss)
    }

    /// Restart the dropout masks' random stream from `seed` (the trainer does it every step, so that a resumed run
    /// draws the same masks as an uninterrupted one).
    pub fn reseed_dropout(&self, seed: u64) -> Result<()> {
        self.state.reseed_dropout(seed)
    }

    pub fn is_training(&self) -> bool {
        self.state.is_training()
    }

    /// Run `f` with the adapter switched off (the reference model of DPO and GRPO), then restore it.
    pub fn with_disabled<T>(&self, f: impl FnOnce() -> T) -> T {
        let _off = self.scoped(AdapterMode {
            enabled: false,
            ..self.mode()
        });
        f()
    }

    /// Run `f` with every A and B set to `values` (e.g. their values as training started: the reference model of
    /// DPO and GRPO after SFT, in the same adapter), then put the current values back. In place, so an optimizer
    /// holding the adapter's `Var`s keeps them; call it where no autograd graph holds the values (before a step's
    /// forward pass, or in an evaluation).
    pub fn with_values<T>(&self, values: &AdapterSnapshot, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let now = self.snapshot()?;
        self.restore(values)?;
        let out = f();
        // The current values go back whether or not `f` succeeded.
        self.restore(&now)?;
        out
    }

    /// The adapter's switches (on/off, training, exact).
    pub fn mode(&self) -> AdapterMode {
        self.state.mode()
    }

    /// Run in `mode` until the returned guard is dropped; then the mode before comes back, whatever way the scope
    /// is left (`?`, a panic). Every temporary mode in kit is set this way, so that a failed `train()` in a notebook
    /// does not leave the adapter training (graphs, exact kernels and dropout in the next `generate`).
    pub fn scoped(&self, mode: AdapterMode) -> ModeGuard<'_> {
        self.state.scoped(mode)
    }

    /// Training mode for a scope (see [`Adapter::set_training`] and [`Adapter::scoped`]).
    pub fn training_scope(&self) -> ModeGuard<'_> {
        self.scoped(AdapterMode {
            training: true,
            ..self.mode()
        })
    }

    /// Inference mode for a scope: no gradients, no dropout (e.g. scoring or sampling inside a training step).
    pub fn inference_scope(&self) -> ModeGuard<'_> {
        self.scoped(AdapterMode {
            training: false,
            ..self.mode()
        })
    }

    /// Exact products, or not, for a scope (see [`Adapter::set_exact`]).
    pub fn exact_scope(&self, exact: bool) -> ModeGuard<'_> {
        self.scoped(AdapterMode { exact, ..self.mode() })
    }

    /// Every trainable tensor (A and B of each layer).
    pub fn vars(&self) -> Vec<Var> {
        self.state.all_weights().into_iter().flat_map(|(a, b)| [a, b]).collect()
    }

    /// Number of trainable parameters (the elements of every A and B).
    pub fn num_trainable(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
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

impl Model {
    /// Attach a fresh adapter (A random, B zero) to the targeted projections, recording the model as the adapter's
    /// base: `adapter_config.json` then names it in `base_model_name_or_path` (as PEFT writes the hub id or path
    /// the base was loaded from), which is where `kit grpo --reward_model` and PEFT users look for the base.
    pub fn attach_lora(&mut self, config: &LoraConfig) -> Result<Adapter> {
        let mut adapter = attach(&mut self.decoder, config)?;
        adapter.base_model_name_or_path = self.name.clone();
        Ok(adapter)
    }

    /// Load a saved PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`, as [`Adapter::save`] or a
    /// trainer's `output_dir` writes them) onto this model, ready to train further: PEFT's
    /// `PeftModel.from_pretrained(model, dir, is_trainable=True)`. The error names the folder when it holds no
    /// adapter.
    pub fn load_adapter(&mut self, dir: impl AsRef<Path>) -> Result<Adapter> {
        let dir = dir.as_ref();
        if !dir.join("adapter_config.json").exists() {
            return Err(Error::file(
                dir,
                "no saved adapter here (adapter_config.json is missing): train and save one into this folder first",
            ));
        }
        peft::load(&mut self.decoder, dir)
    }
}

/// Attach fresh adapters (A random, B zero) to the targeted projections of `decoder`. The decoder does not know
/// where it was loaded from, so `base_model_name_or_path` stays empty: prefer [`Model::attach_lora`].
pub fn attach(decoder: &mut Decoder, config: &LoraConfig) -> Result<Adapter> {
    attach_to(decoder.linears_mut(), config)
}

/// Attach fresh adapters to the targeted layers among `linears` (any set of named layers, e.g. a decoder's
/// `linears_mut()`). A is drawn layer after layer, in the given order, from `config.init_seed`. Every layer of
/// `linears`, targeted or not, gets the adapter's switches; a model carries one adapter.
pub fn attach_to<'a>(linears: impl IntoIterator<Item = &'a mut Linear>, config: &LoraConfig) -> Result<Adapter> {
    config.validate()?;
    let linears: Vec<&mut Linear> = linears.into_iter().collect();
    let names: Vec<String> = linears.iter().map(|l| l.name.clone()).collect();
    config.check_targets(&names)?;
    if let Some(l) = linears.iter().find(|l| l.lora.is_some() || l.adapter.is_some()) {
        return Err(Error::Input(format!(
            "{} already has an adapter (a model carries one: merge it with lora::merge, or load the model again)",
            l.name
        )));
    }
    let targeted = names.iter().map(|n| config.targets(n)).collect::<Result<Vec<bool>>>()?;
    if !targeted.contains(&true) {
        return Err(Error::Input(format!(
            "LoRA target_modules {:?} select no layer of this model",
            config.target_modules
        )));
    }
    let state = Arc::new(AdapterState::new(config.init_seed));
    let mut rng = StdRng::seed_from_u64(config.init_seed);
    let mut modules = Vec::new();
    for (linear, targeted) in linears.into_iter().zip(targeted) {
        linear.adapter = Some(state.clone());
        if !targeted {
            continue;
        }
        let (r, _, scale) = config.rank_alpha_scale(&linear.name)?;
        let (out, inp) = (linear.weight.out_features(), linear.weight.in_features());
        let device = linear.weight.device();
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..r * inp).map(|_| rng.random_range(-bound..bound)).collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (r, inp), &Device::Cpu)?.to_device(&device)?)?;
        let b = Var::zeros((out, r), DType::F32, &device)?;
        linear.lora = Some(LoraLayer {
            slot: state.push_weights(a, b),
            rank: r,
            scale,
            dropout: config.lora_dropout,
        });
        modules.push(linear.name.clone());
    }
    Ok(Adapter {
        config: config.clone(),
        state,
        modules,
        base_model_name_or_path: String::new(),
    })
}

/// Fold each adapter into its base weight (W ← W + scale · B A) and remove it. A quantized base becomes dense f32
/// (re-quantizing would lose most of a small update); a dense base keeps its dtype. Afterwards no layer follows the
/// adapter's switches, and another adapter can be attached.
pub fn merge(decoder: &mut Decoder) -> Result<()> {
    for linear in decoder.linears_mut() {
        merge_linear(linear)?;
    }
    Ok(())
}

/// Fold one layer's adapter into its base weight and detach the layer from the adapter (see [`merge`]).
pub fn merge_linear(linear: &mut Linear) -> Result<()> {
    let state = linear.adapter.take();
    let Some(l) = linear.lora.take() else { return Ok(()) };
    let state = state.ok_or_else(|| Error::msg(format!("{}: LoRA weights without the adapter", linear.name)))?;
    let (a, b) = state.weights(l.slot)?;
    let w = crate::quant::dense_weight(&linear.weight, DType::F32)?;
    let delta = (b.as_tensor().matmul(a.as_tensor())? * l.scale)?;
    let dtype = match &linear.weight {
        FrozenWeight::Dense(t) => t.dtype(),
        FrozenWeight::Quantized(_) => DType::F32,
    };
    linear.weight = FrozenWeight::Dense((w + delta)?.to_dtype(dtype)?);
    // The merged weight is dense; a dense copy of the old quantized one would now be stale.
    linear.dense_copy = None;
    linear.forget_weight_copies();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_adapter_restores_a_saved_adapter_trainable_and_names_a_folder_without_one() {
        let dir = std::env::temp_dir().join(format!("kit-load-adapter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut m = crate::model::tests::tiny();
        let cfg = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            init_seed: 7,
            ..Default::default()
        };
        let a = m.attach_lora(&cfg).unwrap();
        // B is zero at initialisation: make it non-zero so the round trip is visible in the outputs.
        for (_, _, b) in &a.params() {
            b.set(&(b.ones_like().unwrap() * 0.01).unwrap()).unwrap();
        }
        a.save(&dir).unwrap();
        let ids = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
        let outputs = |m: &Model| {
            m.decoder
                .forward(&ids, None, None)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let want = outputs(&m);

        let mut fresh = crate::model::tests::tiny();
        let err = fresh.load_adapter(dir.join("nothing")).unwrap_err().to_string();
        assert!(err.contains("nothing") && err.contains("adapter_config.json"), "{err}");
        let b = fresh.load_adapter(&dir).unwrap();
        assert_eq!(b.base_model_name_or_path, "llama");
        assert_eq!(b.vars().len(), a.vars().len());
        let got = outputs(&fresh);
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn restore_brings_an_adapter_back_to_its_snapshot_and_refuses_another_shape() {
        let mut m = crate::model::tests::tiny();
        let cfg = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            init_seed: 7,
            ..Default::default()
        };
        let a = m.attach_lora(&cfg).unwrap();
        let ids = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
        let outputs = |m: &Model| {
            let y = m.decoder.forward(&ids, None, None).unwrap();
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        // The adapter starts as the base model (B = 0); the snapshot is taken there.
        let base = outputs(&m);
        let start = a.snapshot().unwrap();
        for (_, _, b) in &a.params() {
            b.set(&(b.ones_like().unwrap() * 0.01).unwrap()).unwrap();
        }
        assert_ne!(outputs(&m), base, "changing B must change the outputs");
        // The snapshot is a copy: setting B in place did not change it.
        a.restore(&start).unwrap();
        assert_eq!(outputs(&m), base);

        let mut other = crate::model::tests::tiny();
        let small = other.attach_lora(&LoraConfig { r: 2, ..cfg }).unwrap();
        let err = a.restore(&small.snapshot().unwrap()).unwrap_err().to_string();
        assert!(err.contains("slot 0"), "{err}");
    }
}

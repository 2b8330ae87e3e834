//! LoRA adapters (Hu et al. 2021) on frozen linear layers, configured and saved like PEFT.
//!
//! h = W x + (α / r) · B A x, with A: (r, in) drawn like PEFT's `kaiming_uniform_(a = √5)` — i.e. U(−1/√in, 1/√in) —
//! and B: (out, r) zeros, so training starts from the base model. With rsLoRA (Kalajdzievski 2023) the scale is
//! α / √r. A and B are f32 `Var`s whatever the activation dtype; the base weight is never a `Var`.
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model::{Decoder, FrozenWeight, Linear};
use crate::{Error, Result};

/// Which projections get an adapter: PEFT's `target_modules`, a list of names or the preset "all-linear".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    Preset(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f32,
    pub target_modules: TargetModules,
    pub use_rslora: bool,
    /// Seed for A's initialisation.
    pub init_seed: u64,
}

impl Default for LoraConfig {
    /// PEFT's defaults (r = 8, α = 8, no dropout), on every linear projection.
    fn default() -> Self {
        LoraConfig {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: TargetModules::Preset("all-linear".into()),
            use_rslora: false,
            init_seed: 0,
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Does module `name` (e.g. `model.layers.0.self_attn.q_proj`) get an adapter? PEFT matches a target either as
    /// the whole name or as its trailing dotted component(s); "all-linear" means every projection but the LM head.
    pub fn targets(&self, name: &str) -> bool {
        match &self.target_modules {
            TargetModules::Preset(p) if p == "all-linear" => name != "lm_head",
            TargetModules::Preset(one) => matches_target(name, one),
            TargetModules::List(list) => list.iter().any(|t| matches_target(name, t)),
        }
    }
}

fn matches_target(name: &str, target: &str) -> bool {
    name == target || name.ends_with(&format!(".{target}"))
}

/// Flags shared by every adapter layer of one model: switching the adapter off turns the model back into the base
/// model (the DPO/GRPO reference) without copying anything.
#[derive(Debug)]
pub struct AdapterState {
    enabled: AtomicBool,
    training: AtomicBool,
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
            candle_nn::ops::dropout(x, self.dropout)?
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

    /// PEFT's summary line.
    pub fn summary(&self, decoder: &Decoder) -> String {
        let trainable = self.num_trainable();
        let all = decoder.num_parameters() + trainable;
        format!(
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            thousands(trainable),
            thousands(all),
            100.0 * trainable as f64 / all as f64
        )
    }

    /// Write PEFT's `adapter_config.json` and `adapter_model.safetensors` into `dir`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let mut tensors = HashMap::new();
        for (name, a, b) in &self.params {
            tensors.insert(
                format!("base_model.model.{name}.lora_A.weight"),
                a.as_tensor().to_dtype(DType::F32)?,
            );
            tensors.insert(
                format!("base_model.model.{name}.lora_B.weight"),
                b.as_tensor().to_dtype(DType::F32)?,
            );
        }
        let weights = dir.join("adapter_model.safetensors");
        let tmp = dir.join(".adapter_model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp).map_err(|e| Error::file(&tmp, e))?;
        std::fs::rename(&tmp, &weights).map_err(|e| Error::file(&weights, e))?;
        let cfg = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_model_name_or_path,
            "r": self.config.r,
            "lora_alpha": self.config.lora_alpha,
            "lora_dropout": self.config.lora_dropout,
            "target_modules": self.config.target_modules,
            "use_rslora": self.config.use_rslora,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
        });
        write_atomic(
            &dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&cfg)?.as_bytes(),
        )
    }
}

/// Write `bytes` to a temporary file next to `path`, then rename: a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::file(path, e))
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
    if config.r == 0 {
        return Err(Error::Input("LoRA rank r must be at least 1 (got r = 0)".into()));
    }
    let state = Arc::new(AdapterState {
        enabled: AtomicBool::new(true),
        training: AtomicBool::new(false),
    });
    let mut rng = StdRng::seed_from_u64(config.init_seed);
    let mut params = Vec::new();
    let names: Vec<String> = decoder.linears().iter().map(|l| l.name.clone()).collect();
    let device = decoder.device.clone();
    check_targets(config, &names)?;
    for linear in decoder.linears_mut() {
        if !config.targets(&linear.name) {
            continue;
        }
        if linear.lora.is_some() {
            return Err(Error::Input(format!("{} already has an adapter", linear.name)));
        }
        let (out, inp) = (linear.weight.out_features(), linear.weight.in_features());
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..config.r * inp).map(|_| rng.random_range(-bound..bound)).collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (config.r, inp), &Device::Cpu)?.to_device(&device)?)?;
        let b = Var::zeros((out, config.r), DType::F32, &device)?;
        linear.lora = Some(LoraLayer {
            a: a.clone(),
            b: b.clone(),
            scale: config.scale(),
            dropout: config.lora_dropout,
            state: state.clone(),
        });
        params.push((linear.name.clone(), a, b));
    }
    Ok(Adapter {
        config: config.clone(),
        state,
        params,
        base_model_name_or_path: String::new(),
    })
}

/// Every named target must match at least one module (PEFT refuses such configs too).
fn check_targets(config: &LoraConfig, names: &[String]) -> Result<()> {
    let list: Vec<&String> = match &config.target_modules {
        TargetModules::Preset(p) if p == "all-linear" => return Ok(()),
        TargetModules::Preset(one) => vec![one],
        TargetModules::List(l) => l.iter().collect(),
    };
    let mut kinds: Vec<&str> = names.iter().map(|n| n.rsplit('.').next().unwrap_or(n)).collect();
    kinds.sort();
    kinds.dedup();
    for t in list {
        if !names.iter().any(|n| matches_target(n, t)) {
            return Err(Error::Input(format!(
                "LoRA target module `{t}` matches no layer of this model (its projections: {}, or \"all-linear\")",
                kinds.join(", ")
            )));
        }
    }
    Ok(())
}

/// Load a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) onto `decoder`.
pub fn load(decoder: &mut Decoder, dir: &Path) -> Result<Adapter> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::file(&cfg_path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(&cfg_path, format!("invalid JSON: {e}")))?;
    if let Some(t) = v.get("peft_type").and_then(|t| t.as_str()) {
        if t != "LORA" {
            return Err(Error::field(
                &cfg_path,
                "peft_type",
                format!("`{t}` is not supported (only LORA)"),
            ));
        }
    }
    let config: LoraConfig =
        serde_json::from_value(v.clone()).map_err(|e| Error::file(&cfg_path, format!("not a LoRA config: {e}")))?;
    // Without target_modules our default ("all-linear") would silently guess where the adapter goes.
    if v.get("target_modules").is_none() {
        return Err(Error::field(&cfg_path, "target_modules", "missing"));
    }
    let weights = dir.join("adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &decoder.device).map_err(|e| Error::file(&weights, e))?;
    let mut adapter = attach(decoder, &config).map_err(|e| match e {
        Error::Input(m) => Error::file(&cfg_path, m),
        e => e,
    })?;
    adapter.base_model_name_or_path = v
        .get("base_model_name_or_path")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    let mut used = 0;
    for (name, a, b) in &adapter.params {
        for (var, which) in [(a, "lora_A"), (b, "lora_B")] {
            let key = format!("base_model.model.{name}.{which}.weight");
            let t = tensors
                .get(&key)
                .ok_or_else(|| Error::field(&weights, &key, "missing for a targeted module"))?;
            if t.dims() != var.dims() {
                return Err(Error::field(
                    &weights,
                    &key,
                    format!(
                        "shape {:?} does not fit the model (expected {:?})",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t.to_dtype(DType::F32)?)?;
            used += 1;
        }
    }
    if used != tensors.len() {
        let known: std::collections::HashSet<String> = adapter
            .params
            .iter()
            .flat_map(|(n, _, _)| {
                [
                    format!("base_model.model.{n}.lora_A.weight"),
                    format!("base_model.model.{n}.lora_B.weight"),
                ]
            })
            .collect();
        let extra: Vec<&String> = tensors.keys().filter(|k| !known.contains(*k)).take(3).collect();
        return Err(Error::field(
            &weights,
            extra.first().map(|s| s.as_str()).unwrap_or("?"),
            format!("tensor(s) {extra:?} match no targeted module of this model"),
        ));
    }
    Ok(adapter)
}

/// Fold each adapter into its base weight (W ← W + scale · B A, dense) and remove it.
pub fn merge(decoder: &mut Decoder) -> Result<()> {
    for linear in decoder.linears_mut() {
        merge_linear(linear)?;
    }
    Ok(())
}

fn merge_linear(linear: &mut Linear) -> Result<()> {
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

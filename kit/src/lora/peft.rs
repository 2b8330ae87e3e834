//! PEFT's on-disk format: `adapter_config.json` + `adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` (r, in) and `.lora_B.weight` (out, r).
use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Device};

use super::{attach_to, Adapter, LoraConfig, OneOrMany, Patterns, TargetModules};
use crate::model::{Decoder, Linear};
use crate::{Error, Result};

/// PEFT options that change what the adapter computes and that kit does not implement. Loading an adapter that
/// uses one must fail rather than silently compute something else.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("use_dora", "DoRA adapters"),
    ("lora_bias", "LoRA bias terms"),
    ("fan_in_fan_out", "transposed (Conv1D-style) weights"),
    ("use_qalora", "QA-LoRA"),
    ("use_bdlora", "block-diagonal LoRA"),
    ("modules_to_save", "fully trained extra modules"),
    ("target_parameters", "adapters on bare parameters"),
    ("trainable_token_indices", "trainable token embeddings"),
    ("layer_replication", "layer replication"),
    ("alora_invocation_tokens", "activated LoRA"),
    ("arrow_config", "Arrow routing"),
    ("monteclora_config", "MonteCLoRA"),
    ("velora_config", "VeLoRA"),
    ("kasa_config", "KaSA"),
];

/// Initialisations that also rewrite the base weights: such an adapter only fits the modified base.
const BASE_CHANGING_INITS: &[&str] = &["pissa", "olora", "corda", "loftq", "lora_ga"];

/// Is this JSON value "set" (neither null, false, empty, nor zero)?
fn is_set(v: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match v {
        Null => false,
        Bool(b) => *b,
        String(s) => !s.is_empty(),
        Array(a) => !a.is_empty(),
        Object(o) => !o.is_empty(),
        Number(_) => true,
    }
}

fn check_supported(path: &Path, v: &serde_json::Value) -> Result<()> {
    if let Some(t) = v.get("peft_type").and_then(|t| t.as_str()) {
        if t != "LORA" {
            return Err(Error::field(
                path,
                "peft_type",
                format!("`{t}` is not supported (only LORA)"),
            ));
        }
    }
    for (key, what) in UNSUPPORTED {
        if let Some(val) = v.get(*key).filter(|x| is_set(x)) {
            return Err(Error::field(
                path,
                *key,
                format!("{val} asks for {what}, which kit does not implement"),
            ));
        }
    }
    if let Some(init) = v.get("init_lora_weights").and_then(|i| i.as_str()) {
        let lower = init.to_ascii_lowercase();
        if BASE_CHANGING_INITS.iter().any(|p| lower.starts_with(p)) {
            return Err(Error::field(
                path,
                "init_lora_weights",
                format!(
                    "`{init}` adapters were trained against a modified base model; convert them with PEFT \
                     (save_pretrained(path_initial_model_for_weight_conversion=...)) first"
                ),
            ));
        }
    }
    // Without target_modules our default ("all-linear") would silently guess where the adapter goes.
    if v.get("target_modules").is_none_or(|t| t.is_null()) {
        return Err(Error::field(path, "target_modules", "missing"));
    }
    Ok(())
}

/// What `save` writes to adapter_config.json (PEFT fills every other field with its default).
#[derive(serde::Serialize)]
struct PeftConfigFile<'a> {
    peft_type: &'a str,
    task_type: &'a str,
    base_model_name_or_path: &'a str,
    r: usize,
    lora_alpha: f64,
    lora_dropout: f32,
    target_modules: &'a TargetModules,
    exclude_modules: &'a Option<TargetModules>,
    layers_to_transform: &'a Option<OneOrMany<usize>>,
    layers_pattern: &'a Option<OneOrMany<String>>,
    rank_pattern: &'a Patterns<usize>,
    alpha_pattern: &'a Patterns<f64>,
    use_rslora: bool,
    bias: &'a str,
    fan_in_fan_out: bool,
    use_dora: bool,
    inference_mode: bool,
    init_lora_weights: bool,
    modules_to_save: Option<Vec<String>>,
}

impl Adapter {
    /// Write PEFT's `adapter_config.json` and `adapter_model.safetensors` into `dir`, each atomically.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let mut tensors = HashMap::new();
        for (name, a, b) in &self.params() {
            for (var, which) in [(a, "lora_A"), (b, "lora_B")] {
                let t = var.as_tensor().to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
                tensors.insert(format!("base_model.model.{name}.{which}.weight"), t);
            }
        }
        let weights = dir.join("adapter_model.safetensors");
        crate::io::save_tensors_atomic(&weights, &tensors)?;
        let c = &self.config;
        // A struct, not `json!`: a `serde_json::Value` map would sort the pattern keys, and their order matters.
        let cfg = PeftConfigFile {
            peft_type: "LORA",
            task_type: "CAUSAL_LM",
            base_model_name_or_path: &self.base_model_name_or_path,
            r: c.r,
            lora_alpha: c.lora_alpha,
            lora_dropout: c.lora_dropout,
            target_modules: &c.target_modules,
            exclude_modules: &c.exclude_modules,
            layers_to_transform: &c.layers_to_transform,
            layers_pattern: &c.layers_pattern,
            rank_pattern: &c.rank_pattern,
            alpha_pattern: &c.alpha_pattern,
            use_rslora: c.use_rslora,
            bias: "none",
            fan_in_fan_out: false,
            use_dora: false,
            inference_mode: true,
            init_lora_weights: true,
            modules_to_save: None,
        };
        crate::io::write_atomic(
            dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&cfg)?.as_bytes(),
        )
    }
}

impl Adapter {
    /// Overwrite this adapter's A and B with the ones saved in `dir` (resuming a run): every layer must be there,
    /// with the same shapes.
    pub fn load_weights(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let weights = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| Error::file(&weights, e))?;
        for (name, a, b) in &self.params() {
            for (var, which) in [(a, "lora_A"), (b, "lora_B")] {
                let key = format!("base_model.model.{name}.{which}.weight");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| Error::field(&weights, &key, "missing (saved from a different adapter?)"))?;
                if t.shape() != var.shape() {
                    return Err(Error::field(
                        &weights,
                        &key,
                        format!("shape {:?}, expected {:?}", t.shape(), var.shape()),
                    ));
                }
                var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
            }
        }
        Ok(())
    }
}

/// Load a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) onto `decoder`.
pub fn load(decoder: &mut Decoder, dir: impl AsRef<Path>) -> Result<Adapter> {
    load_into(decoder.linears_mut(), dir)
}

/// Load a PEFT adapter directory onto the named layers `linears`.
pub fn load_into<'a>(linears: impl IntoIterator<Item = &'a mut Linear>, dir: impl AsRef<Path>) -> Result<Adapter> {
    let dir = dir.as_ref();
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::file(&cfg_path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::file(&cfg_path, format!("invalid JSON: {e}")))?;
    check_supported(&cfg_path, &v)?;
    // Parsed from the text, not from `v`: pattern order is significant and `Value` may not keep it.
    let config: LoraConfig =
        serde_json::from_str(&text).map_err(|e| Error::file(&cfg_path, format!("not a LoRA config: {e}")))?;
    let weights = dir.join("adapter_model.safetensors");
    if !weights.exists() && dir.join("adapter_model.bin").exists() {
        return Err(Error::file(
            &weights,
            "missing; only adapter_model.bin (a pickle) is there: re-save the adapter with PEFT's \
             save_pretrained(safe_serialization=True)",
        ));
    }
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| Error::file(&weights, e))?;
    let mut adapter = attach_to(linears, &config).map_err(|e| match e {
        Error::Input(m) => Error::file(&cfg_path, m),
        e => e,
    })?;
    adapter.base_model_name_or_path = v
        .get("base_model_name_or_path")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    let mut known = HashSet::new();
    for (name, a, b) in &adapter.params() {
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
            var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
            known.insert(key);
        }
    }
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !known.contains(*k)).collect();
    if !extra.is_empty() {
        extra.sort();
        extra.truncate(3);
        return Err(Error::field(
            &weights,
            extra[0].as_str(),
            format!("tensor(s) {extra:?} match no targeted module of this model"),
        ));
    }
    Ok(adapter)
}

//! One `ModelConfig` for every supported family, read from `config.json` or GGUF metadata.
//!
//! The decoder has no per-family code paths: each family difference is a switch here
//! (norm offset, qk-norm, sandwich norms, soft-capping, sliding windows, embedding scale, ...).
use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma,
    Gemma2,
    Gemma3,
}

impl Arch {
    /// Parse an HF `model_type` or a GGUF `general.architecture`.
    pub fn parse(name: &str) -> Option<Arch> {
        Some(match name {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma" => Arch::Gemma,
            "gemma2" => Arch::Gemma2,
            "gemma3" | "gemma3_text" => Arch::Gemma3,
            _ => return None,
        })
    }

    pub fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma | Arch::Gemma2 | Arch::Gemma3)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// SiLU (Llama, Qwen).
    Silu,
    /// GELU with the tanh approximation (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
    /// Exact GELU.
    Gelu,
}

/// RoPE frequency scaling (`rope_scaling` in config.json).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RopeScaling {
    /// Positions divided by `factor` (Gemma 3's global layers in the larger models).
    Linear { factor: f64 },
    /// Llama 3.x's frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Per-layer attention kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LayerKind {
    /// Attends to every earlier token.
    Full,
    /// Attends only to the last `sliding_window` tokens (Gemma 2/3 local layers).
    Sliding,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    /// q/k/v projections carry a bias (Qwen2, or `attention_bias` in Llama configs).
    pub attention_bias: bool,
    /// o_proj carries a bias (only when `attention_bias` is set for Llama-family configs).
    pub o_bias: bool,
    /// gate/up/down projections carry a bias (`mlp_bias`).
    pub mlp_bias: bool,
    /// RMSNorm over each head's q and k (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm multiplies by (1 + w) instead of w (all Gemma).
    pub norm_plus_one: bool,
    /// Embeddings are multiplied by sqrt(hidden_size) (all Gemma).
    pub scale_embeddings: bool,
    /// Extra norms after attention and after the MLP (Gemma 2/3 "sandwich" norms).
    pub sandwich_norm: bool,
    /// Attention scores are scaled by 1/sqrt(query_pre_attn_scalar) (Gemma 2/3), else 1/sqrt(head_dim).
    pub query_pre_attn_scalar: Option<f64>,
    /// tanh soft-capping of attention scores (Gemma 2).
    pub attn_logit_softcapping: Option<f64>,
    /// tanh soft-capping of the final logits (Gemma 2; Gemma 3 when its config sets it).
    pub final_logit_softcapping: Option<f64>,
    pub sliding_window: Option<usize>,
    pub layer_kinds: Vec<LayerKind>,
    /// RoPE base for full-attention layers.
    pub rope_theta: f64,
    /// RoPE base for sliding layers, when it differs (Gemma 3: 10 000).
    pub rope_local_base_freq: Option<f64>,
    /// Scaling for full-attention layers (Gemma 3 applies it to global layers only).
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

impl ModelConfig {
    /// Read an HF `config.json`. Errors name the file and the field at fault.
    pub fn from_config_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        let root: Value = serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        // Multimodal Gemma 3 nests the language model's config under `text_config`.
        let v = get(&root, "text_config").unwrap_or(&root);
        let model_type = get(v, "model_type")
            .or_else(|| get(&root, "model_type"))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::field(path, "model_type", "missing"))?;
        let arch = Arch::parse(model_type).ok_or_else(|| Error::UnsupportedArch {
            path: path.into(),
            arch: model_type.into(),
        })?;

        let usize_req = |k: &str| -> Result<usize> {
            get(v, k)
                .ok_or_else(|| Error::field(path, k, "missing"))?
                .as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| Error::field(path, k, "expected a non-negative integer"))
        };
        let usize_opt = |k: &str| -> Result<Option<usize>> {
            match get(v, k) {
                None => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(|x| Some(x as usize))
                    .ok_or_else(|| Error::field(path, k, "expected a non-negative integer")),
            }
        };
        let f64_opt = |k: &str| -> Result<Option<f64>> {
            match get(v, k) {
                None => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| Error::field(path, k, "expected a number")),
            }
        };
        let bool_opt = |k: &str| -> Result<Option<bool>> {
            match get(v, k) {
                None => Ok(None),
                Some(x) => x
                    .as_bool()
                    .map(Some)
                    .ok_or_else(|| Error::field(path, k, "expected true or false")),
            }
        };
        let ids = |k: &str| -> Vec<u32> {
            match get(v, k).or_else(|| get(&root, k)) {
                Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
                Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect(),
                _ => vec![],
            }
        };

        let hidden_size = usize_req("hidden_size")?;
        let num_attention_heads = usize_req("num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(Error::field(path, "num_attention_heads", "must be > 0"));
        }
        let num_hidden_layers = usize_req("num_hidden_layers")?;
        let num_key_value_heads = usize_opt("num_key_value_heads")?.unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(Error::field(
                path,
                "num_key_value_heads",
                format!("{num_key_value_heads} does not divide num_attention_heads={num_attention_heads}"),
            ));
        }
        let head_dim = usize_opt("head_dim")?.unwrap_or(hidden_size / num_attention_heads);

        let act_name = get(v, "hidden_activation")
            .or_else(|| get(v, "hidden_act"))
            .and_then(Value::as_str)
            .unwrap_or(if arch.is_gemma() { "gelu_pytorch_tanh" } else { "silu" });
        let hidden_act = match act_name {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            // Gemma 1 configs say "gelu" but the reference implementation uses the tanh approximation.
            "gelu" if arch.is_gemma() => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            other => {
                return Err(Error::field(
                    path,
                    "hidden_act",
                    format!("unsupported activation `{other}`"),
                ))
            }
        };

        // RoPE settings come either as the classic `rope_theta` / `rope_scaling` / `rope_local_base_freq` keys, or
        // (transformers ≥ 5) as `rope_parameters`, flat or keyed by layer type.
        let rope_params = get(v, "rope_parameters");
        let (full_rp, sliding_rp) = match rope_params {
            Some(rp) if rp.get("full_attention").is_some() || rp.get("sliding_attention").is_some() => {
                (rp.get("full_attention"), rp.get("sliding_attention"))
            }
            Some(rp) => (Some(rp), None),
            None => (None, None),
        };
        let theta = |rp: Option<&Value>| rp.and_then(|r| r.get("rope_theta")).and_then(Value::as_f64);
        let rope_theta = theta(full_rp).or(f64_opt("rope_theta")?).unwrap_or(10_000.0);
        let rope_scaling = match full_rp.or(get(v, "rope_scaling")) {
            Some(rs) => parse_rope_scaling(rs, path)?,
            None => None,
        };
        let rope_scaling = match (rope_scaling, full_rp.is_some()) {
            // The flat `rope_parameters` holds only the theta when there is no scaling; fall back to `rope_scaling`.
            (None, true) => match get(v, "rope_scaling") {
                Some(rs) => parse_rope_scaling(rs, path)?,
                None => None,
            },
            (s, _) => s,
        };
        let rope_local_base_freq = theta(sliding_rp).or(f64_opt("rope_local_base_freq")?);

        let sliding_window = match arch {
            Arch::Gemma2 | Arch::Gemma3 => usize_opt("sliding_window")?,
            // Qwen2 configs carry a sliding_window that is only used when use_sliding_window is true.
            Arch::Qwen2 | Arch::Qwen3 if bool_opt("use_sliding_window")?.unwrap_or(false) => {
                usize_opt("sliding_window")?
            }
            _ => None,
        };
        let layer_kinds = match get(v, "layer_types").and_then(Value::as_array) {
            Some(list) => {
                let kinds = list
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("sliding_attention") => Ok(LayerKind::Sliding),
                        Some("full_attention") => Ok(LayerKind::Full),
                        other => Err(Error::field(
                            path,
                            "layer_types",
                            format!("unknown layer type {other:?}"),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                if kinds.len() != num_hidden_layers {
                    return Err(Error::field(
                        path,
                        "layer_types",
                        format!("has {} entries for {num_hidden_layers} layers", kinds.len()),
                    ));
                }
                kinds
            }
            None => default_layer_kinds(
                arch,
                num_hidden_layers,
                usize_opt("sliding_window_pattern")?,
                sliding_window.is_some(),
            ),
        };

        let is_gemma = arch.is_gemma();
        let attention_bias = match arch {
            Arch::Qwen2 => true,
            _ => bool_opt("attention_bias")?.unwrap_or(false),
        };
        let cfg = ModelConfig {
            arch,
            vocab_size: usize_req("vocab_size")?,
            hidden_size,
            intermediate_size: usize_req("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
            max_position_embeddings: usize_opt("max_position_embeddings")?.unwrap_or(4096),
            hidden_act,
            attention_bias,
            // Qwen2's o_proj has no bias; Llama's `attention_bias` covers o_proj too.
            o_bias: arch != Arch::Qwen2 && attention_bias,
            mlp_bias: bool_opt("mlp_bias")?.unwrap_or(false),
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Gemma3),
            norm_plus_one: is_gemma,
            scale_embeddings: is_gemma,
            sandwich_norm: matches!(arch, Arch::Gemma2 | Arch::Gemma3),
            query_pre_attn_scalar: if matches!(arch, Arch::Gemma2 | Arch::Gemma3) {
                f64_opt("query_pre_attn_scalar")?
            } else {
                None
            },
            // transformers' Gemma 3 keeps `attn_logit_softcapping` in its config but never applies it (its attention
            // passes no `softcap`, unlike Gemma 2's); both cap the final logits when `final_logit_softcapping` is set.
            attn_logit_softcapping: if arch == Arch::Gemma2 {
                f64_opt("attn_logit_softcapping")?
            } else {
                None
            },
            final_logit_softcapping: if matches!(arch, Arch::Gemma2 | Arch::Gemma3) {
                f64_opt("final_logit_softcapping")?
            } else {
                None
            },
            sliding_window,
            layer_kinds,
            rope_theta,
            rope_local_base_freq: if arch == Arch::Gemma3 {
                Some(rope_local_base_freq.unwrap_or(10_000.0))
            } else {
                None
            },
            rope_scaling,
            tie_word_embeddings: bool_opt("tie_word_embeddings")?.unwrap_or(is_gemma),
            bos_token_id: ids("bos_token_id").first().copied(),
            eos_token_ids: ids("eos_token_id"),
            pad_token_id: ids("pad_token_id").first().copied(),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Consistency checks that would otherwise surface as shape errors deep inside a forward pass.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::field(
                path,
                "head_dim",
                format!("{} must be even for RoPE", self.head_dim),
            ));
        }
        if self.layer_kinds.len() != self.num_hidden_layers {
            return Err(Error::field(
                path,
                "num_hidden_layers",
                "does not match the per-layer attention kinds",
            ));
        }
        if self.layer_kinds.contains(&LayerKind::Sliding) && self.sliding_window.is_none() {
            return Err(Error::field(
                path,
                "sliding_window",
                "sliding layers need a window size",
            ));
        }
        for (k, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
        ] {
            if v == 0 {
                return Err(Error::field(path, k, "must be > 0"));
            }
        }
        Ok(())
    }

    /// The RoPE base and scaling used by layer `i`.
    pub fn rope_for_layer(&self, i: usize) -> (f64, Option<&RopeScaling>) {
        match (self.layer_kinds[i], self.rope_local_base_freq) {
            (LayerKind::Sliding, Some(local)) => (local, None),
            _ => (self.rope_theta, self.rope_scaling.as_ref()),
        }
    }

    /// 1/sqrt(d) factor applied to attention scores.
    pub fn attention_scale(&self) -> f64 {
        1.0 / self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64).sqrt()
    }
}

/// `rope_scaling` / `rope_parameters` entry → scaling (None for the default, unscaled RoPE).
fn parse_rope_scaling(rs: &Value, path: &Path) -> Result<Option<RopeScaling>> {
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let f = |k: &str| rs.get(k).and_then(Value::as_f64);
    let factor = || f("factor").ok_or_else(|| Error::field(path, "rope_scaling.factor", "missing"));
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear { factor: factor()? }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: f("original_max_position_embeddings").unwrap_or(8192.0),
        }),
        other => {
            return Err(Error::field(
                path,
                "rope_scaling.rope_type",
                format!("unsupported `{other}` (kit supports linear and llama3)"),
            ))
        }
    })
}

/// Which layers slide when the config has no explicit `layer_types` (older configs).
fn default_layer_kinds(arch: Arch, n: usize, pattern: Option<usize>, has_window: bool) -> Vec<LayerKind> {
    (0..n)
        .map(|i| match arch {
            // Gemma 2: even layers are local.
            Arch::Gemma2 if has_window => {
                if i % 2 == 0 {
                    LayerKind::Sliding
                } else {
                    LayerKind::Full
                }
            }
            // Gemma 3: every `pattern`-th layer (default 6) is global, the others local.
            Arch::Gemma3 if has_window => {
                if (i + 1) % pattern.unwrap_or(6) == 0 {
                    LayerKind::Full
                } else {
                    LayerKind::Sliding
                }
            }
            _ if has_window => LayerKind::Sliding,
            _ => LayerKind::Full,
        })
        .collect()
}

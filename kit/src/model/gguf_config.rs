//! `ModelConfig` from GGUF metadata (llama.cpp's keys), for the families kit supports.
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use super::config::{Activation, Arch, LayerKind, ModelConfig};
use crate::{Error, Result};

fn num(v: &Value) -> Option<f64> {
    Some(match v {
        Value::U8(x) => *x as f64,
        Value::I8(x) => *x as f64,
        Value::U16(x) => *x as f64,
        Value::I16(x) => *x as f64,
        Value::U32(x) => *x as f64,
        Value::I32(x) => *x as f64,
        Value::U64(x) => *x as f64,
        Value::I64(x) => *x as f64,
        Value::F32(x) => *x as f64,
        Value::F64(x) => *x,
        _ => return None,
    })
}

impl ModelConfig {
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let arch_name = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| Error::field(path, "general.architecture", "missing"))?
            .clone();
        let arch = Arch::parse(&arch_name).ok_or_else(|| Error::UnsupportedArch {
            path: path.into(),
            arch: arch_name.clone(),
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let opt = |k: &str| md.get(&key(k)).and_then(num);
        let req = |k: &str| -> Result<usize> {
            let full = key(k);
            md.get(&full)
                .ok_or_else(|| Error::field(path, &full, "missing"))
                .and_then(|v| {
                    num(v)
                        .map(|x| x as usize)
                        .ok_or_else(|| Error::field(path, &full, "expected a number"))
                })
        };
        let hidden_size = req("embedding_length")?;
        let num_attention_heads = req("attention.head_count")?;
        if num_attention_heads == 0 {
            return Err(Error::field(path, key("attention.head_count"), "must be > 0"));
        }
        let num_key_value_heads = opt("attention.head_count_kv")
            .map(|x| x as usize)
            .unwrap_or(num_attention_heads);
        let num_hidden_layers = req("block_count")?;
        let head_dim = opt("attention.key_length")
            .map(|x| x as usize)
            .unwrap_or(hidden_size / num_attention_heads);
        let has = |t: &str| content.tensor_infos.contains_key(t);
        let vocab_size = match md.get("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => a.len(),
            _ => opt("vocab_size").map(|x| x as usize).ok_or_else(|| {
                Error::field(
                    path,
                    "tokenizer.ggml.tokens",
                    "missing (needed for the vocabulary size)",
                )
            })?,
        };
        let sliding_window = if matches!(arch, Arch::Gemma2 | Arch::Gemma3) {
            opt("attention.sliding_window").map(|x| x as usize)
        } else {
            None
        };
        let layer_kinds = (0..num_hidden_layers)
            .map(|i| match (arch, sliding_window) {
                (Arch::Gemma2, Some(_)) if i % 2 == 0 => LayerKind::Sliding,
                // llama.cpp hard-codes Gemma 3's pattern: five local layers, then one global.
                (Arch::Gemma3, Some(_)) if (i + 1) % 6 != 0 => LayerKind::Sliding,
                _ => LayerKind::Full,
            })
            .collect();
        let u32_key = |k: &str| md.get(k).and_then(num).map(|x| x as u32);
        let is_gemma = arch.is_gemma();
        let cfg = ModelConfig {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: req("feed_forward_length")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: opt("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            max_position_embeddings: opt("context_length").map(|x| x as usize).unwrap_or(4096),
            hidden_act: if is_gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            attention_bias: has("blk.0.attn_q.bias"),
            o_bias: has("blk.0.attn_output.bias"),
            mlp_bias: has("blk.0.ffn_up.bias"),
            qk_norm: has("blk.0.attn_q_norm.weight"),
            norm_plus_one: is_gemma,
            scale_embeddings: is_gemma,
            sandwich_norm: has("blk.0.post_attention_norm.weight"),
            // llama.cpp scales Gemma 2/3 queries by 1/sqrt(head_dim), which is what these small models use.
            query_pre_attn_scalar: if matches!(arch, Arch::Gemma2 | Arch::Gemma3) {
                Some(head_dim as f64)
            } else {
                None
            },
            // As config.json is read (config.rs): transformers' Gemma 3 caps the final logits when its config sets
            // `final_logit_softcapping` (llama.cpp's converter then writes `gemma3.final_logit_softcapping`), and
            // never caps attention scores (Gemma3Attention passes no `softcap`; the converter asserts it is unset).
            attn_logit_softcapping: if arch == Arch::Gemma2 {
                opt("attn_logit_softcapping")
            } else {
                None
            },
            final_logit_softcapping: if matches!(arch, Arch::Gemma2 | Arch::Gemma3) {
                opt("final_logit_softcapping")
            } else {
                None
            },
            sliding_window,
            layer_kinds,
            rope_theta: opt("rope.freq_base").unwrap_or(10_000.0),
            rope_local_base_freq: if arch == Arch::Gemma3 { Some(10_000.0) } else { None },
            rope_scaling: match md
                .get(&key("rope.scaling.type"))
                .and_then(|v| v.to_string().ok())
                .map(String::as_str)
            {
                Some("linear") => {
                    opt("rope.scaling.factor").map(|factor| super::config::RopeScaling::Linear { factor })
                }
                _ => None,
            },
            tie_word_embeddings: !has("output.weight"),
            bos_token_id: u32_key("tokenizer.ggml.bos_token_id"),
            eos_token_ids: u32_key("tokenizer.ggml.eos_token_id").into_iter().collect(),
            pad_token_id: u32_key("tokenizer.ggml.padding_token_id"),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};

    use super::*;

    fn fixture_config(name: &str) -> serde_json::Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/tiny/{name}/config.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The metadata llama.cpp's `convert_hf_to_gguf.py` writes for a Gemma 3 config.json (`Gemma3Model`): the
    /// soft-capping key only when the config sets it, attention soft-capping never (the converter asserts it unset).
    fn gemma3_gguf(hf: &serde_json::Value) -> Content {
        let n = |k: &str| hf[k].as_u64().unwrap() as u32;
        let mut md = HashMap::new();
        md.insert("general.architecture".into(), Value::String("gemma3".into()));
        for (k, v) in [
            ("context_length", n("max_position_embeddings")),
            ("embedding_length", n("hidden_size")),
            ("block_count", n("num_hidden_layers")),
            ("feed_forward_length", n("intermediate_size")),
            ("attention.head_count", n("num_attention_heads")),
            ("attention.head_count_kv", n("num_key_value_heads")),
            ("attention.key_length", n("head_dim")),
            ("attention.value_length", n("head_dim")),
            ("attention.sliding_window", n("sliding_window")),
        ] {
            md.insert(format!("gemma3.{k}"), Value::U32(v));
        }
        md.insert("gemma3.attention.layer_norm_rms_epsilon".into(), Value::F32(1e-6));
        md.insert("gemma3.rope.freq_base".into(), Value::F32(1e6));
        if let Some(cap) = hf["final_logit_softcapping"].as_f64() {
            md.insert("gemma3.final_logit_softcapping".into(), Value::F32(cap as f32));
        }
        let tokens = (0..n("vocab_size")).map(|i| Value::String(format!("t{i}"))).collect();
        md.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens));
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: md,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    #[test]
    fn gemma3_soft_capping_reads_the_same_from_config_json_and_gguf() {
        let dir = std::env::temp_dir().join(format!("kit-gemma3-softcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The fixture as saved (no capping), and with the final capping set as a Gemma 2-style config would.
        for cap in [None, Some(30.0)] {
            let mut hf = fixture_config("gemma3");
            hf["final_logit_softcapping"] = cap.map_or(serde_json::Value::Null, |c: f64| c.into());
            let path = dir.join("config.json");
            std::fs::write(&path, hf.to_string()).unwrap();
            let from_json = ModelConfig::from_config_json(&path).unwrap();
            let from_gguf = ModelConfig::from_gguf(&gemma3_gguf(&hf), Path::new("gemma3.gguf")).unwrap();
            // transformers applies the config's value as it is (Gemma3ForCausalLM), and never caps attention.
            assert_eq!(from_json.final_logit_softcapping, cap);
            assert_eq!(from_gguf.final_logit_softcapping, cap);
            assert_eq!(from_json.attn_logit_softcapping, None);
            assert_eq!(from_gguf.attn_logit_softcapping, None);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

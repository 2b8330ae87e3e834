//! Build a [`Decoder`] from safetensors (dense) or GGUF (kept quantized) weights.
//!
//! Weights are addressed by their transformers names everywhere in kit; GGUF's llama.cpp names are mapped here.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};

use super::attention::Attention;
use super::config::{Arch, ModelConfig};
use super::decoder::{Decoder, DecoderLayer, Embedding};
use super::linear::Linear;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::Rope;
use crate::quant::FrozenWeight;
use crate::{Error, Result};

/// Where the weights come from.
pub enum WeightSource {
    Safetensors {
        tensors: candle_core::safetensors::MmapedSafetensors,
        files: Vec<PathBuf>,
    },
    Gguf {
        content: gguf_file::Content,
        file: std::fs::File,
        path: PathBuf,
        /// Dequantize every weight to a dense tensor as it is loaded (exact transformers parity, more memory).
        dense: bool,
    },
}

impl WeightSource {
    /// Open `model.safetensors`, or every shard listed in `model.safetensors.index.json`, in `dir`.
    pub fn safetensors_dir(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::file(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::file(&index, format!("invalid JSON: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::field(&index, "weight_map", "missing or not an object"))?;
            let names: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            let single = dir.join("model.safetensors");
            if !single.exists() {
                return Err(Error::file(dir, "no model.safetensors or model.safetensors.index.json"));
            }
            vec![single]
        };
        for f in &files {
            if !f.exists() {
                return Err(Error::file(f, "shard listed in the index is missing"));
            }
            check_safetensors(f)?;
        }
        let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
            .map_err(|e| Error::file(&files[0], e))?;
        Ok(WeightSource::Safetensors { tensors, files })
    }

    /// Open a GGUF file and check every tensor's data lies inside it.
    pub fn gguf(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| Error::file(path, format!("not a valid GGUF file: {e}")))?;
        let len = file.metadata()?.len();
        for (name, info) in &content.tensor_infos {
            let n: usize = info.shape.elem_count();
            let bytes = n / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
            let end = content.tensor_data_offset + info.offset + bytes as u64;
            if end > len {
                return Err(Error::file(
                    path,
                    format!("truncated: tensor `{name}` needs bytes up to {end} but the file has {len}"),
                ));
            }
        }
        Ok(WeightSource::Gguf {
            content,
            file,
            path: path.to_path_buf(),
            dense: false,
        })
    }

    fn path(&self) -> &Path {
        match self {
            WeightSource::Safetensors { files, .. } => &files[0],
            WeightSource::Gguf { path, .. } => path,
        }
    }

    fn is_gguf(&self) -> bool {
        matches!(self, WeightSource::Gguf { .. })
    }

    fn has(&self, hf_name: &str, cfg: &ModelConfig) -> bool {
        match self {
            WeightSource::Safetensors { tensors, .. } => tensors.get(hf_name).is_ok(),
            WeightSource::Gguf { content, .. } => content.tensor_infos.contains_key(&gguf_name(hf_name, cfg)),
        }
    }

    fn missing(&self, hf_name: &str, cfg: &ModelConfig) -> Error {
        let shown = match self {
            WeightSource::Gguf { .. } => {
                format!("{} (transformers name {hf_name})", gguf_name(hf_name, cfg))
            }
            _ => hf_name.to_string(),
        };
        Error::field(self.path(), shown, "tensor missing")
    }

    /// A weight as stored: quantized GGUF tensors stay quantized, everything else is a dense tensor.
    fn weight(&mut self, hf_name: &str, cfg: &ModelConfig, device: &Device, dtype: DType) -> Result<FrozenWeight> {
        if !self.has(hf_name, cfg) {
            return Err(self.missing(hf_name, cfg));
        }
        match self {
            WeightSource::Safetensors { tensors, files } => {
                let t = tensors
                    .load(hf_name, device)
                    .map_err(|e| Error::field(&files[0], hf_name, e))?;
                Ok(FrozenWeight::Dense(t.to_dtype(dtype)?))
            }
            WeightSource::Gguf {
                content,
                file,
                path,
                dense,
            } => {
                let name = gguf_name(hf_name, cfg);
                let q = content
                    .tensor(file, &name, device)
                    .map_err(|e| Error::field(&*path, &name, e))?;
                let q = match unpermute_heads(hf_name, cfg) {
                    Some(heads) => unpermute_rows(&q, heads, device)?,
                    None => q,
                };
                if *dense {
                    return Ok(FrozenWeight::Dense(q.dequantize(device)?.to_dtype(dtype)?));
                }
                let q = cpu_fast_layout(q, device)?;
                match q.dtype() {
                    candle_core::quantized::GgmlDType::F32
                    | candle_core::quantized::GgmlDType::F16
                    | candle_core::quantized::GgmlDType::BF16 => {
                        Ok(FrozenWeight::Dense(q.dequantize(device)?.to_dtype(dtype)?))
                    }
                    _ => Ok(FrozenWeight::Quantized(Arc::new(q))),
                }
            }
        }
    }

    /// A small dense tensor (norm weights, biases), always dequantized.
    fn dense(&mut self, hf_name: &str, cfg: &ModelConfig, device: &Device, dtype: DType) -> Result<Tensor> {
        match self.weight(hf_name, cfg, device, dtype)? {
            FrozenWeight::Dense(t) => Ok(t),
            FrozenWeight::Quantized(q) => Ok(q.dequantize(device)?.to_dtype(dtype)?),
        }
    }

    fn expect_shape(&self, hf_name: &str, got: &[usize], want: &[usize]) -> Result<()> {
        if got != want {
            return Err(Error::field(
                self.path(),
                hf_name,
                format!("shape {got:?} does not match the config (expected {want:?})"),
            ));
        }
        Ok(())
    }
}

/// Check a safetensors header and that every tensor's bytes lie inside the file, without reading the data,
/// so that a truncated download names itself instead of failing deep inside a load.
fn check_safetensors(path: &Path) -> Result<()> {
    use std::io::Read;
    let bad = |msg: String| Error::file(path, format!("not a valid safetensors file: {msg}"));
    let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let len = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let n = u64::from_le_bytes(n);
    if n > len.saturating_sub(8) || n > 100_000_000 {
        return Err(bad(format!(
            "header length {n} exceeds the file size {len} (truncated?)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let data_len = len - 8 - n;
    for (name, info) in header
        .as_object()
        .ok_or_else(|| bad("header is not an object".into()))?
    {
        if name == "__metadata__" {
            continue;
        }
        let end = info
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(|e| e.as_u64())
            .ok_or_else(|| bad(format!("tensor `{name}` has no data_offsets")))?;
        if end > data_len {
            return Err(Error::field(
                path,
                name,
                format!("data ends at byte {end} but the file holds only {data_len} data bytes (truncated?)"),
            ));
        }
    }
    Ok(())
}

/// candle's CPU kernels have SIMD dot products for Q4_0, Q8_0 and the K-quants, but only scalar code for Q4_1,
/// Q5_0 and Q5_1 (about 5× slower; SmolLM2's Q4_1 and Gemma 3's Q5_0 layers hit it). On CPU we re-encode those
/// as Q8_0: the values change by at most 1/254 of each block's range, and the matmuls become fast. Q4_1 stays as it
/// is where kit's own kernel reads it (`qgemv`, x86 with AVX2): the GGUF's values exactly, in 20 bytes a block
/// instead of 34.
fn cpu_fast_layout(q: QTensor, device: &Device) -> Result<QTensor> {
    use candle_core::quantized::GgmlDType as G;
    if !device.is_cpu() || !matches!(q.dtype(), G::Q4_1 | G::Q5_0 | G::Q5_1) {
        return Ok(q);
    }
    if q.dtype() == G::Q4_1 && crate::qgemv::available() {
        return Ok(q);
    }
    Ok(QTensor::quantize(&q.dequantize(device)?, G::Q8_0)?)
}

/// transformers name → llama.cpp GGUF name.
pub fn gguf_name(hf: &str, cfg: &ModelConfig) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return hf.to_string();
    };
    let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
    let (module, suffix) = tail.rsplit_once('.').unwrap_or((tail, ""));
    let mapped = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        // In Llama/Qwen this norm sits before the MLP (llama.cpp's ffn_norm); in Gemma 2/3 it follows attention.
        "post_attention_layernorm" if cfg.sandwich_norm => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        other => other,
    };
    format!("blk.{idx}.{mapped}.{suffix}")
}

/// llama.cpp stores Llama q/k rows permuted for its interleaved RoPE; returns the head count to undo it with.
fn unpermute_heads(hf: &str, cfg: &ModelConfig) -> Option<usize> {
    if cfg.arch != Arch::Llama {
        return None;
    }
    if hf.ends_with("self_attn.q_proj.weight") || hf.ends_with("self_attn.q_proj.bias") {
        Some(cfg.num_attention_heads)
    } else if hf.ends_with("self_attn.k_proj.weight") || hf.ends_with("self_attn.k_proj.bias") {
        Some(cfg.num_key_value_heads)
    } else {
        None
    }
}

/// Undo llama.cpp's q/k permutation by moving whole rows (quantization blocks never cross rows, so this is exact).
/// Within each head, GGUF row `2j + i` holds transformers row `i * d/2 + j`.
fn unpermute_rows(q: &QTensor, heads: usize, device: &Device) -> Result<QTensor> {
    let dims = q.shape().dims().to_vec();
    let rows = dims[0];
    let row_elems: usize = dims[1..].iter().product();
    let dt = q.dtype();
    let row_bytes = row_elems / dt.block_size() * dt.type_size();
    let data = q.data()?;
    let d = rows / heads;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for i in 0..2 {
            for j in 0..d / 2 {
                let dst = h * d + i * (d / 2) + j;
                let src = h * d + 2 * j + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(qtensor_from_ggml(dt, &out, dims, device)?)
}

impl Decoder {
    /// Assemble the decoder described by `cfg` from `src`.
    pub fn load(cfg: &ModelConfig, src: &mut WeightSource, device: &Device, dtype: DType) -> Result<Self> {
        // llama.cpp folds Gemma's +1 into stored norm weights; config.json checkpoints keep the raw w.
        let plus_one = cfg.norm_plus_one && !src.is_gguf();
        let norm = |src: &mut WeightSource, name: &str, dim: usize| -> Result<RmsNorm> {
            let w = src.dense(name, cfg, device, DType::F32)?;
            src.expect_shape(name, w.dims(), &[dim])?;
            RmsNorm::new(w, cfg.rms_norm_eps, plus_one)
        };
        let linear = |src: &mut WeightSource, name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let w = src.weight(&format!("{name}.weight"), cfg, device, dtype)?;
            src.expect_shape(
                &format!("{name}.weight"),
                &[w.out_features(), w.in_features()],
                &[out, inp],
            )?;
            let b = if bias {
                let b = src.dense(&format!("{name}.bias"), cfg, device, dtype)?;
                src.expect_shape(&format!("{name}.bias"), b.dims(), &[out])?;
                Some(b)
            } else {
                None
            };
            Ok(Linear::new(w, b, name))
        };

        let (h, hd, nh, nkv, ff) = (
            cfg.hidden_size,
            cfg.head_dim,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.intermediate_size,
        );
        let embed_tokens = match src.weight("model.embed_tokens.weight", cfg, device, dtype)? {
            FrozenWeight::Dense(t) => Embedding::Dense(t),
            FrozenWeight::Quantized(q) => Embedding::Quantized(q),
        };
        let emb_shape = match &embed_tokens {
            Embedding::Dense(t) => t.dims().to_vec(),
            Embedding::Quantized(q) => q.shape().dims().to_vec(),
        };
        src.expect_shape("model.embed_tokens.weight", &emb_shape, &[cfg.vocab_size, h])?;

        // Rope tables: one per distinct base among the layers.
        let mut ropes: Vec<(f64, Rope)> = Vec::new();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let (base, scaling) = cfg.rope_for_layer(i);
            let rope_index = match ropes.iter().position(|(b, _)| *b == base) {
                Some(k) => k,
                None => {
                    ropes.push((base, Rope::new(hd, base, scaling, device)?));
                    ropes.len() - 1
                }
            };
            let qk_norm = |src: &mut WeightSource, n: &str| -> Result<Option<RmsNorm>> {
                if cfg.qk_norm {
                    Ok(Some(norm(src, &format!("{p}.self_attn.{n}.weight"), hd)?))
                } else {
                    Ok(None)
                }
            };
            let self_attn = Attention {
                q_proj: linear(src, &format!("{p}.self_attn.q_proj"), nh * hd, h, cfg.attention_bias)?,
                k_proj: linear(src, &format!("{p}.self_attn.k_proj"), nkv * hd, h, cfg.attention_bias)?,
                v_proj: linear(src, &format!("{p}.self_attn.v_proj"), nkv * hd, h, cfg.attention_bias)?,
                o_proj: linear(src, &format!("{p}.self_attn.o_proj"), h, nh * hd, cfg.o_bias)?,
                q_norm: qk_norm(src, "q_norm")?,
                k_norm: qk_norm(src, "k_norm")?,
                num_heads: nh,
                num_kv_heads: nkv,
                head_dim: hd,
                scale: cfg.attention_scale(),
                softcap: cfg.attn_logit_softcapping,
            };
            let mlp = Mlp {
                gate_proj: linear(src, &format!("{p}.mlp.gate_proj"), ff, h, cfg.mlp_bias)?,
                up_proj: linear(src, &format!("{p}.mlp.up_proj"), ff, h, cfg.mlp_bias)?,
                down_proj: linear(src, &format!("{p}.mlp.down_proj"), h, ff, cfg.mlp_bias)?,
                act: cfg.hidden_act,
            };
            let (pre_ff, post_ff) = if cfg.sandwich_norm {
                (
                    Some(norm(src, &format!("{p}.pre_feedforward_layernorm.weight"), h)?),
                    Some(norm(src, &format!("{p}.post_feedforward_layernorm.weight"), h)?),
                )
            } else {
                (None, None)
            };
            layers.push(DecoderLayer {
                self_attn,
                mlp,
                input_layernorm: norm(src, &format!("{p}.input_layernorm.weight"), h)?,
                post_attention_layernorm: norm(src, &format!("{p}.post_attention_layernorm.weight"), h)?,
                pre_feedforward_layernorm: pre_ff,
                post_feedforward_layernorm: post_ff,
                kind: cfg.layer_kinds[i],
                rope_index,
            });
        }
        let final_norm = norm(src, "model.norm.weight", h)?;
        let mut lm_head = if cfg.tie_word_embeddings || !src.has("lm_head.weight", cfg) {
            let w = match &embed_tokens {
                Embedding::Dense(t) => FrozenWeight::Dense(t.clone()),
                Embedding::Quantized(q) => FrozenWeight::Quantized(q.clone()),
            };
            Linear::new(w, None, "lm_head")
        } else {
            linear(src, "lm_head", cfg.vocab_size, h, false)?
        };
        // On the CPU a quantized LM head is also kept dense: it is vocabulary × hidden (Gemma 3 270M: 262,144 × 640,
        // +671 MB in f32): dequantizing it at every training forward and backward, or multiplying a batch by it
        // row by row in candle's quantized kernel (55% of a 28-row Gemma decode under perf), is then avoided.
        if device.is_cpu() {
            lm_head.keep_dense_copy(dtype)?;
        }
        Ok(Decoder {
            config: cfg.clone(),
            embed_tokens,
            layers,
            norm: final_norm,
            lm_head,
            ropes: ropes.into_iter().map(|(_, r)| r).collect(),
            device: device.clone(),
            dtype,
        })
    }
}

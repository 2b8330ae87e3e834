//! The one decoder: embed → blocks → norm → head, for every supported family.
//!
//! Written for training and batched generation alike: full-sequence logits, per-row positions for left padding,
//! and an optional KV cache. Family differences are switches in [`ModelConfig`].
use std::sync::Arc;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, QTensor};
use candle_core::{DType, Device, IndexOp, Tensor};

use super::attention::{build_mask, build_packed_mask, Attention, GroupLengths};
use super::config::{LayerKind, ModelConfig};
use super::kv_cache::{KvCache, LayerCache};
use super::linear::Linear;
use super::lora_slot::AdapterState;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::Rope;
use crate::quant::FrozenWeight;
use crate::{Error, Result};

/// The token embedding table, dense or kept quantized (rows are dequantized on lookup).
#[derive(Debug, Clone)]
pub enum Embedding {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
}

impl Embedding {
    pub fn vocab_size(&self) -> usize {
        match self {
            Embedding::Dense(t) => t.dims()[0],
            Embedding::Quantized(q) => q.shape().dims()[0],
        }
    }

    /// Look up `ids` (batch, seq) → (batch, seq, hidden) in `dtype`.
    pub fn forward(&self, ids: &Tensor, dtype: DType) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let vocab = self.vocab_size();
        if let Some(&bad) = ids
            .flatten_all()?
            .to_vec1::<u32>()?
            .iter()
            .find(|&&id| id as usize >= vocab)
        {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        match self {
            Embedding::Dense(w) => Ok(w.embedding(&ids.flatten_all()?)?.reshape((b, t, ()))?.to_dtype(dtype)?),
            Embedding::Quantized(q) => {
                // Copy the quantized rows we need and dequantize only those: the table of a 262k-token vocabulary
                // stays at its quantized size in memory.
                let dim = q.shape().dims2()?.1;
                let qdt = q.dtype();
                let row_bytes = dim / qdt.block_size() * qdt.type_size();
                let data = q.data()?;
                let ids_v = ids.flatten_all()?.to_vec1::<u32>()?;
                let mut rows = Vec::with_capacity(ids_v.len() * row_bytes);
                for &id in &ids_v {
                    let id = id as usize;
                    if id >= vocab {
                        return Err(Error::Input(format!(
                            "token id {id} is outside the vocabulary (size {vocab})"
                        )));
                    }
                    rows.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
                }
                let device = ids.device();
                let sub = qtensor_from_ggml(qdt, &rows, vec![ids_v.len(), dim], device)?;
                Ok(sub.dequantize(device)?.reshape((b, t, dim))?.to_dtype(dtype)?)
            }
        }
    }
}

/// One group of a packed row for [`Decoder::forward_grouped_hidden`]: a prefix and the suffixes that each continue
/// it (none: a plain sequence).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedGroup<'a> {
    pub prefix: &'a [u32],
    pub suffixes: Vec<&'a [u32]>,
}

impl PackedGroup<'_> {
    /// The group's lengths, as the packed mask reads them.
    pub fn lengths(&self) -> GroupLengths {
        GroupLengths {
            prefix: self.prefix.len(),
            suffixes: self.suffixes.iter().map(|s| s.len()).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    /// Llama/Qwen: the norm before the MLP. Gemma 2/3: the norm after attention.
    pub post_attention_layernorm: RmsNorm,
    /// Gemma 2/3 only: the norm before the MLP and the one after it.
    pub pre_feedforward_layernorm: Option<RmsNorm>,
    pub post_feedforward_layernorm: Option<RmsNorm>,
    pub kind: LayerKind,
    /// Index into `Decoder::ropes`.
    pub rope_index: usize,
}

impl DecoderLayer {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        let h = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, cos, sin, mask, cache)?;
        let x = match &self.pre_feedforward_layernorm {
            // Sandwich norms (Gemma 2/3): normalise the attention output before adding it back.
            Some(pre_ff) => {
                let x = (x + self.post_attention_layernorm.forward(&h)?)?;
                let h = self.mlp.forward(&pre_ff.forward(&x)?)?;
                let post_ff = self
                    .post_feedforward_layernorm
                    .as_ref()
                    .expect("sandwich norms come in pairs");
                (x + post_ff.forward(&h)?)?
            }
            None => {
                let x = (x + h)?;
                let h = self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?;
                (x + h)?
            }
        };
        Ok(x)
    }
}

#[derive(Debug, Clone)]
pub struct Decoder {
    pub config: ModelConfig,
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    /// One rotary table per distinct (base, scaling) — Gemma 3 has a local and a global one.
    pub ropes: Vec<Rope>,
    pub device: Device,
    /// Activation dtype (f32 on CPU, f16 on a T4).
    pub dtype: DType,
}

impl Decoder {
    /// Token embeddings as the first layer sees them (Gemma's sqrt(hidden) scale applied): (batch, seq, hidden).
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let x = self.embed_tokens.forward(input_ids, self.dtype)?;
        self.scale_embeddings(x)
    }

    /// Gemma multiplies embeddings by sqrt(hidden), rounded to the activation dtype first as transformers does.
    pub fn scale_embeddings(&self, x: Tensor) -> Result<Tensor> {
        if !self.config.scale_embeddings {
            return Ok(x);
        }
        let s = Tensor::new((self.config.hidden_size as f64).sqrt() as f32, &self.device)?.to_dtype(x.dtype())?;
        Ok(x.broadcast_mul(&s)?)
    }

    /// Hidden states after the final norm: (batch, seq, hidden).
    ///
    /// `input_ids`: (batch, seq) u32. `attention_mask`: 1 for real tokens, 0 for padding, same shape as
    /// `input_ids`; `None` means no padding. With a `cache`, the new tokens are appended to it and attend to
    /// everything it holds.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&[Vec<bool>]>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        input_ids
            .dims2()
            .map_err(|_| Error::Input(format!("input_ids must be (batch, seq), got {:?}", input_ids.shape())))?;
        self.forward_embeds(&self.embed(input_ids)?, attention_mask, cache)
    }

    /// Like [`Decoder::forward_hidden`] from embeddings (batch, seq, hidden), as returned by [`Decoder::embed`].
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        attention_mask: Option<&[Vec<bool>]>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t, _) = embeds.dims3()?;
        let new_mask: Vec<Vec<bool>> = match attention_mask {
            Some(m) => {
                if m.len() != b || m.iter().any(|r| r.len() != t) {
                    return Err(Error::Input(format!("attention_mask must be {b}×{t} like input_ids")));
                }
                m.to_vec()
            }
            None => vec![vec![true; t]; b],
        };
        // Gradient checkpointing applies to a training forward over whole sequences (no cache of the caller's).
        let checkpointing = if cache.is_none() { self.checkpointing() } else { None };
        let keep_keys = cache.is_some();
        let mut local_cache = None;
        let cache = match cache {
            Some(c) => c,
            None => local_cache.insert(KvCache::new(self.layers.len())),
        };
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![LayerCache::default(); self.layers.len()];
        }
        if cache.is_empty() {
            cache.key_mask = vec![vec![]; b];
            cache.next_position = vec![0; b];
        } else if cache.key_mask.len() != b {
            return Err(Error::Input(format!(
                "batch of {b} rows does not match the cache's {} rows",
                cache.key_mask.len()
            )));
        }
        let past = cache.len();
        if past + t > self.config.max_position_embeddings {
            return Err(Error::Input(format!(
                "sequence of {} tokens is longer than the model's context ({} tokens, max_position_embeddings)",
                past + t,
                self.config.max_position_embeddings
            )));
        }
        // Position ids: each row counts only its real tokens (pads get the position of the next real token,
        // which is harmless since nothing attends to them).
        let mut positions = Vec::with_capacity(b * t);
        for (r, row) in new_mask.iter().enumerate() {
            for &real in row {
                positions.push(cache.next_position[r]);
                if real {
                    cache.next_position[r] += 1;
                }
            }
            cache.key_mask[r].extend_from_slice(row);
        }
        let positions = Tensor::from_vec(positions, (b, t), &self.device)?;

        let full_mask = build_mask(&cache.key_mask, past, t, None, &self.device)?;
        let sliding_mask = match self.sliding_window() {
            Some(w) => Some(build_mask(&cache.key_mask, past, t, Some(w), &self.device)?),
            None => None,
        };
        // A forward without the caller's cache (training, scoring) keeps no keys and values.
        let caches = if keep_keys {
            cache.layers.iter_mut().map(Some).collect()
        } else {
            vec![]
        };
        self.run_layers(
            embeds,
            &positions,
            &full_mask,
            sliding_mask.as_ref(),
            caches,
            checkpointing,
        )
    }

    /// The adapter's switches when a forward over whole sequences is to be checkpointed: gradient checkpointing on,
    /// in training, adapter enabled.
    fn checkpointing(&self) -> Option<Arc<AdapterState>> {
        match &self.lm_head.adapter {
            Some(s) if s.is_checkpointing() && s.is_training() && s.is_enabled() => Some(s.clone()),
            _ => None,
        }
    }

    /// The sliding window, when some layer slides (Gemma's local layers).
    fn sliding_window(&self) -> Option<usize> {
        self.config
            .sliding_window
            .filter(|_| self.layers.iter().any(|l| l.kind == LayerKind::Sliding))
    }

    /// The decoder layers and the final norm on `embeds` at `positions`, under the attention masks given.
    fn run_layers(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        full_mask: &Tensor,
        sliding_mask: Option<&Tensor>,
        mut caches: Vec<Option<&mut LayerCache>>,
        checkpointing: Option<Arc<AdapterState>>,
    ) -> Result<Tensor> {
        let cos_sin = self
            .ropes
            .iter()
            .map(|r| r.cos_sin(positions))
            .collect::<Result<Vec<_>>>()?;
        caches.resize_with(self.layers.len(), || None);
        let mut x = embeds.clone();
        for (layer, layer_cache) in self.layers.iter().zip(caches) {
            let mask = match layer.kind {
                LayerKind::Sliding => sliding_mask.unwrap_or(full_mask),
                LayerKind::Full => full_mask,
            };
            let (cos, sin) = &cos_sin[layer.rope_index];
            x = match &checkpointing {
                // The first layer's input (the embeddings) carries no graph: it runs plainly.
                Some(state) if x.track_op() => {
                    let (layer, cos, sin, mask) = (layer.clone(), cos.clone(), sin.clone(), mask.clone());
                    super::checkpoint::checkpointed(&x, state, move |x| layer.forward(x, &cos, &sin, &mask, None))?
                }
                _ => layer.forward(&x, cos, sin, mask, layer_cache)?,
            };
        }
        self.norm.forward(&x)
    }

    /// Hidden states after the final norm of sequences packed without padding: `rows[i]` holds the sequences of
    /// packed row i, laid end to end; the result is (rows, longest row, hidden), a sequence's states starting at
    /// the sum of the lengths before it in its row (beyond a row's end: padding, attended by nothing).
    ///
    /// Each sequence attends only to itself and counts its positions from 0, so each token's state is the one the
    /// padded batch gives it, up to the order of float sums (TRL's `padding_free`). Fewer positions run through the
    /// layers when the lengths differ.
    pub fn forward_packed_hidden(&self, rows: &[Vec<&[u32]>]) -> Result<Tensor> {
        let rows: Vec<Vec<PackedGroup>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|s| PackedGroup {
                        prefix: s,
                        suffixes: vec![],
                    })
                    .collect()
            })
            .collect();
        self.forward_grouped_hidden(&rows)
    }

    /// [`Decoder::forward_packed_hidden`] for groups of sequences that share a prefix (a prompt and its sampled
    /// completions, or a prompt with its chosen and rejected answers): the prefix runs once, then each suffix,
    /// each attending to the prefix and to itself. A suffix token's state is the one it has in the prefix followed
    /// by that suffix alone; the group's states lie as prefix, suffix 1, suffix 2, … in its row. The prefix's keys
    /// and values serve every suffix, and its gradient sums theirs.
    pub fn forward_grouped_hidden(&self, rows: &[Vec<PackedGroup>]) -> Result<Tensor> {
        let layout: Vec<Vec<GroupLengths>> = rows
            .iter()
            .map(|r| r.iter().map(PackedGroup::lengths).collect())
            .collect();
        let width = layout
            .iter()
            .map(|r| r.iter().map(GroupLengths::len).sum::<usize>())
            .max()
            .unwrap_or(0);
        let longest = layout
            .iter()
            .flatten()
            .map(|g| g.prefix + g.suffixes.iter().copied().max().unwrap_or(0))
            .max()
            .unwrap_or(0);
        if width == 0 {
            return Err(Error::Input("nothing to run: no tokens in the packed rows".into()));
        }
        if longest > self.config.max_position_embeddings {
            return Err(Error::Input(format!(
                "sequence of {longest} tokens is longer than the model's context ({} tokens, max_position_embeddings)",
                self.config.max_position_embeddings
            )));
        }
        let (mut ids, mut positions) = (vec![], vec![]);
        for (row, lengths) in rows.iter().zip(&layout) {
            for g in row {
                let p = g.prefix.len() as u32;
                ids.extend_from_slice(g.prefix);
                positions.extend(0..p);
                for s in &g.suffixes {
                    ids.extend_from_slice(s);
                    positions.extend(p..p + s.len() as u32);
                }
            }
            let filled: usize = lengths.iter().map(GroupLengths::len).sum();
            ids.extend(std::iter::repeat_n(0, width - filled));
            positions.extend(std::iter::repeat_n(0, width - filled));
        }
        let n = rows.len();
        let ids = Tensor::from_vec(ids, (n, width), &self.device)?;
        let positions = Tensor::from_vec(positions, (n, width), &self.device)?;
        let full_mask = build_packed_mask(&layout, width, None, &self.device)?;
        let sliding_mask = match self.sliding_window() {
            Some(w) => Some(build_packed_mask(&layout, width, Some(w), &self.device)?),
            None => None,
        };
        let checkpointing = self.checkpointing();
        let embeds = self.embed(&ids)?;
        self.run_layers(
            &embeds,
            &positions,
            &full_mask,
            sliding_mask.as_ref(),
            vec![],
            checkpointing,
        )
    }

    /// Logits for every position: (batch, seq, vocab), f32.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&[Vec<bool>]>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let h = self.forward_hidden(input_ids, attention_mask, cache)?;
        self.logits(&h)
    }

    /// Apply the LM head (and the final soft-capping of Gemma 2, or of Gemma 3 when its config sets one).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self.lm_head.forward(hidden)?.to_dtype(DType::F32)?;
        Ok(match self.config.final_logit_softcapping {
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        })
    }

    /// Logits of the last position of each row: (batch, vocab).
    pub fn last_logits(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&[Vec<bool>]>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let h = self.forward_hidden(input_ids, attention_mask, cache)?;
        let t = h.dim(1)?;
        // The last column is a strided view; matmul kernels want it contiguous.
        Ok(self.logits(&h.i((.., t - 1..t, ..))?.contiguous()?)?.squeeze(1)?)
    }

    /// Every linear projection, in layer order (for LoRA).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out = Vec::new();
        for l in self.layers.iter_mut() {
            let a = &mut l.self_attn;
            out.extend([&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj]);
            let m = &mut l.mlp;
            out.extend([&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]);
        }
        out.push(&mut self.lm_head);
        out
    }

    /// `load_in_4bit`: quantize every dense projection except the LM head (as bitsandbytes skips `lm_head`) to
    /// `target` (Q4K; Q4_0 where rows are not a multiple of 256). GGUF weights are left as they are.
    pub fn quantize_linears(&mut self, target: candle_core::quantized::GgmlDType) -> Result<usize> {
        let mut n = 0;
        for l in self.linears_mut() {
            if l.name == "lm_head" {
                continue;
            }
            if let FrozenWeight::Dense(w) = &l.weight {
                if let Some(q) = crate::quant::quantize_weight(w, target)? {
                    l.weight = FrozenWeight::Quantized(q);
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Number of frozen parameters (embedding, projections, norms); a tied LM head is counted once.
    pub fn num_parameters(&self) -> usize {
        let emb = self.embed_tokens.vocab_size() * self.config.hidden_size;
        let tied = matches!(
            (&self.embed_tokens, &self.lm_head.weight),
            (Embedding::Dense(_), FrozenWeight::Dense(_)) | (Embedding::Quantized(_), FrozenWeight::Quantized(_))
        ) && self.config.tie_word_embeddings;
        let norms: usize = self
            .layers
            .iter()
            .map(|l| {
                let mut n = l.input_layernorm.weight.elem_count() + l.post_attention_layernorm.weight.elem_count();
                for o in [
                    &l.pre_feedforward_layernorm,
                    &l.post_feedforward_layernorm,
                    &l.self_attn.q_norm,
                    &l.self_attn.k_norm,
                ]
                .into_iter()
                .flatten()
                {
                    n += o.weight.elem_count();
                }
                n
            })
            .sum::<usize>()
            + self.norm.weight.elem_count();
        let linears: usize = self
            .linears()
            .iter()
            .filter(|l| !(tied && l.name == "lm_head"))
            .map(|l| l.num_parameters())
            .sum();
        emb + linears + norms
    }

    pub fn linears(&self) -> Vec<&Linear> {
        let mut out = Vec::new();
        for l in self.layers.iter() {
            let a = &l.self_attn;
            out.extend([&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj]);
            let m = &l.mlp;
            out.extend([&m.gate_proj, &m.up_proj, &m.down_proj]);
        }
        out.push(&self.lm_head);
        out
    }
}

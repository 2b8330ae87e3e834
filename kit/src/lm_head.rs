//! The LM head on the scored positions only, a chunk of rows at a time: per-token log-probs with their gradient in
//! closed form, and the statistics the trainers log, without the (positions × vocab) logits ever existing whole.
//!
//! For a row h (hidden, after the final norm) with target t, logits u = h Wᵀ (W: vocab × hidden, frozen),
//! z = s(u) / τ with s the optional soft-cap c·tanh(u / c) (Gemma 2/3) and τ the sampling temperature:
//!
//!   log p(t | h) = z_t − logsumexp(z)
//!   ∂ log p(t | h) / ∂h = ((onehot(t) − softmax(z)) ⊙ s′(u) / τ) · W,   s′(u) = 1 − tanh²(u / c)  (or 1)
//!
//! Each log-prob depends on its own row alone, so whatever the upstream gradient gᵢ of row i, ∂L/∂hᵢ = gᵢ · ∂ log pᵢ/∂hᵢ:
//! the vector on the right is computed in the forward, chunk by chunk, while the chunk's logits exist, and kept
//! (positions × hidden, ~1/85 of the logits for SmolLM2's 49,152 tokens). The backward only scales it. This is the
//! fused linear + cross-entropy of Liger-Kernel (Hsu et al., 2024, arXiv:2410.10989), in its per-row form: the same
//! two head products as the unfused backward, and no logits kept for it.
use candle_core::{DType, Tensor, D};

use crate::model::Decoder;
use crate::{Error, Result};

/// f32 elements of one chunk's logits (16 MiB); the chunk has at least [`MIN_CHUNK_ROWS`] rows.
const CHUNK_ELEMENTS: usize = 1 << 22;
const MIN_CHUNK_ROWS: usize = 16;

/// What the LM head gives for each of k scored positions.
pub struct HeadScores {
    /// log p(target) per position: (k,), f32, differentiable with respect to the hidden states passed in.
    pub logps: Tensor,
    /// Mean of each position's logits over the vocabulary (TRL's `logits/chosen` averages these).
    pub mean_logit: Vec<f32>,
    /// Whether the arg-max of the logits is the target (`mean_token_accuracy`).
    pub correct: Vec<bool>,
    /// Entropy −Σ p log p of each predicted distribution, in nats.
    pub entropy: Vec<f32>,
}

/// Score `targets` (k,) at `hidden` (k, hidden) under softmax(logits / `temperature`).
///
/// When the LM head itself is trained (LoRA on `lm_head`) its weights need the logits' gradient; the head then runs
/// once on all rows inside the autograd graph, as [`Decoder::logits`] does.
pub fn head_scores(decoder: &Decoder, hidden: &Tensor, targets: &[u32], temperature: f64) -> Result<HeadScores> {
    let vocab = decoder.lm_head.weight.out_features();
    head_scores_in_chunks(
        decoder,
        hidden,
        targets,
        temperature,
        (CHUNK_ELEMENTS / vocab.max(1)).max(MIN_CHUNK_ROWS),
    )
}

/// [`head_scores`] with the head run on `rows_per_chunk` rows at a time (≥ 1).
pub fn head_scores_in_chunks(
    decoder: &Decoder,
    hidden: &Tensor,
    targets: &[u32],
    temperature: f64,
    rows_per_chunk: usize,
) -> Result<HeadScores> {
    let (k, _) = hidden.dims2()?;
    if targets.len() != k {
        return Err(Error::Input(format!("{} targets for {k} positions", targets.len())));
    }
    let vocab = decoder.lm_head.weight.out_features();
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::Input(format!(
            "target id {t} is outside the vocabulary ({vocab})"
        )));
    }
    let dev = hidden.device();
    if decoder.lm_head.lora.is_some() {
        let mut logits = decoder.logits(hidden)?;
        if temperature != 1.0 {
            logits = (logits / temperature)?;
        }
        let t = Tensor::new(targets, dev)?;
        let logps = crate::loss::token_log_probs(&logits, &t)?;
        let stats = ChunkStats::of(&logits.detach(), &t.unsqueeze(1)?)?;
        return Ok(HeadScores {
            logps,
            mean_logit: stats.mean_logit.to_vec1()?,
            correct: stats.correct(targets)?,
            entropy: stats.entropy.to_vec1()?,
        });
    }

    let track = hidden.track_op();
    let cap = decoder.config.final_logit_softcapping;
    // W for the gradient rows, dense once for all chunks (the dense copy where the model keeps one).
    let w = if track && !decoder.lm_head.runs_bf16(hidden) {
        Some(decoder.lm_head.dense_weight(DType::F32)?)
    } else {
        None
    };
    let rows_per_chunk = rows_per_chunk.max(1);
    let h = hidden.detach();
    let (mut logps, mut grads) = (vec![], vec![]);
    let mut out = HeadScores {
        logps: Tensor::zeros(0, DType::F32, dev)?,
        mean_logit: Vec::with_capacity(k),
        correct: Vec::with_capacity(k),
        entropy: Vec::with_capacity(k),
    };
    for start in (0..k).step_by(rows_per_chunk) {
        let n = rows_per_chunk.min(k - start);
        let t = Tensor::new(&targets[start..start + n], dev)?.unsqueeze(1)?;
        // u: (n, vocab), multiplied as the head multiplies rows that carry a gradient, when they do.
        let u = decoder
            .lm_head
            .forward_frozen(&h.narrow(0, start, n)?, track)?
            .to_dtype(DType::F32)?;
        let (mut z, tanh) = match cap {
            Some(c) => {
                let th = (u / c)?.tanh()?;
                ((&th * c)?, Some(th))
            }
            None => (u, None),
        };
        if temperature != 1.0 {
            z = (z / temperature)?;
        }
        let stats = ChunkStats::of(&z, &t)?;
        logps.push(stats.logp.clone());
        if track {
            // (onehot − softmax) ⊙ s′(u) / τ, then · W: (n, vocab) · (vocab, hidden) → (n, hidden).
            let mut dz = stats
                .softmax
                .neg()?
                .scatter_add(&t, &Tensor::ones((n, 1), DType::F32, dev)?, 1)?;
            if let Some(th) = tanh {
                dz = (dz * (1.0 - th.sqr()?)?)?;
            }
            if temperature != 1.0 {
                dz = (dz / temperature)?;
            }
            grads.push(decoder.lm_head.frozen_input_gradient(&dz, w.as_ref())?);
        }
        out.mean_logit.extend(stats.mean_logit.to_vec1::<f32>()?);
        out.correct.extend(stats.correct(&targets[start..start + n])?);
        out.entropy.extend(stats.entropy.to_vec1::<f32>()?);
    }
    let logps = Tensor::cat(&logps, 0)?;
    out.logps = if track {
        let dlogp_dh = Tensor::cat(&grads, 0)?.to_dtype(hidden.dtype())?;
        crate::autograd::with_backward(hidden, logps, "lm-head-log-probs", move |_, _, g| {
            dlogp_dh.broadcast_mul(&g.to_dtype(dlogp_dh.dtype())?.unsqueeze(1)?)
        })?
    } else {
        logps
    };
    Ok(out)
}

/// Row-wise results over one chunk of logits z (n, vocab), no graph.
struct ChunkStats {
    /// (n,) log p(target).
    logp: Tensor,
    /// (n, vocab).
    softmax: Tensor,
    mean_logit: Tensor,
    argmax: Tensor,
    entropy: Tensor,
}

impl ChunkStats {
    /// `t`: (n, 1) u32 targets.
    fn of(z: &Tensor, t: &Tensor) -> Result<Self> {
        let max = z.max_keepdim(D::Minus1)?;
        let e = z.broadcast_sub(&max)?.exp()?;
        let sum = e.sum_keepdim(D::Minus1)?;
        let lse = (sum.log()? + &max)?; // (n, 1)
        let softmax = e.broadcast_div(&sum)?;
        let logp = (z.gather(t, 1)? - &lse)?.squeeze(1)?;
        // H = logsumexp(z) − Σ p z.
        let entropy = (lse.squeeze(1)? - (&softmax * z)?.sum(D::Minus1)?)?;
        Ok(ChunkStats {
            logp,
            softmax,
            mean_logit: z.mean(D::Minus1)?,
            argmax: z.argmax(D::Minus1)?,
            entropy,
        })
    }

    fn correct(&self, targets: &[u32]) -> Result<Vec<bool>> {
        Ok(self
            .argmax
            .to_vec1::<u32>()?
            .iter()
            .zip(targets)
            .map(|(a, t)| a == t)
            .collect())
    }
}

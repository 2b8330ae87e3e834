//! The one seam between trainers and the model: per-token log-probabilities of sequences.
//!
//! A batch is right-padded (pads after the last real token never influence earlier positions in a causal model, so
//! no attention mask is needed). Position j of the outputs scores token j+1 given tokens 0..=j.
use candle_core::{DType, Device, Tensor, D};

use crate::data::tokenize::Tokenized;
use crate::loss::token_log_probs;
use crate::model::Decoder;
use crate::{Error, Result};

/// Right-padded token ids and, for each predicted token, its loss weight.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// (b, t) u32.
    pub ids: Tensor,
    /// (b, t − 1) f32: weight of predicting ids[:, j + 1] (1 on completion tokens, 0 on prompt and padding).
    pub mask: Tensor,
    /// Real (non-pad) tokens in the batch, as TRL's `num_tokens` counts them.
    pub num_tokens: usize,
    /// Real length of each row.
    pub lengths: Vec<usize>,
}

/// Right-pad `seqs` with `pad` into one batch.
pub fn collate(seqs: &[&Tokenized], pad: u32, device: &Device) -> Result<SeqBatch> {
    let b = seqs.len();
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    if b == 0 || t < 2 {
        return Err(Error::Input("a batch needs at least one sequence of two or more tokens".into()));
    }
    let mut ids = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * (t - 1));
    for s in seqs {
        ids.extend(s.ids.iter().copied().chain(std::iter::repeat_n(pad, t - s.len())));
        for j in 1..t {
            mask.push(if j < s.len() && s.completion_mask[j] { 1f32 } else { 0.0 });
        }
    }
    Ok(SeqBatch {
        ids: Tensor::from_vec(ids, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t - 1), device)?,
        num_tokens: seqs.iter().map(|s| s.len()).sum(),
        lengths: seqs.iter().map(|s| s.len()).collect(),
    })
}

/// Per-token log-probs (b, t − 1), differentiable w.r.t. whatever is trainable, and the logits that produced them
/// ((b·(t − 1), vocab), f32) for metrics.
pub struct TokenScores {
    pub logps: Tensor,
    pub logits: Tensor,
}

/// Run the decoder on `batch` and score every next token.
pub fn token_scores(decoder: &Decoder, batch: &SeqBatch) -> Result<TokenScores> {
    let (b, t) = batch.ids.dims2()?;
    let logits = decoder.forward(&batch.ids, None, None)?;
    let v = logits.dim(2)?;
    let pred = logits.narrow(1, 0, t - 1)?.reshape((b * (t - 1), v))?;
    let targets = batch.ids.narrow(1, 1, t - 1)?.contiguous()?.flatten_all()?;
    let logps = token_log_probs(&pred, &targets)?.reshape((b, t - 1))?;
    Ok(TokenScores { logps, logits: pred })
}

/// Σⱼ mask·logp per row: (b,).
pub fn sequence_logps(token_logps: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok((token_logps * mask)?.sum(1)?)
}

/// Statistics of the logits over the masked positions, with no gradient: (mean logit, token accuracy, mean entropy).
///
/// The mean logit is averaged over the vocabulary too (TRL's `logits/chosen`); the accuracy compares the arg-max
/// with the target (`mean_token_accuracy`); the entropy is −Σ p log p of each predicted distribution.
pub struct LogitStats {
    pub mean_logit: f64,
    pub accuracy: f64,
    pub entropy: f64,
    pub count: f64,
}

pub fn logit_stats(logits: &Tensor, batch: &SeqBatch, rows: std::ops::Range<usize>) -> Result<LogitStats> {
    let (_, t) = batch.ids.dims2()?;
    let z = logits.detach().narrow(0, rows.start * (t - 1), rows.len() * (t - 1))?;
    let w = batch.mask.narrow(0, rows.start, rows.len())?.flatten_all()?;
    let targets = batch
        .ids
        .narrow(0, rows.start, rows.len())?
        .narrow(1, 1, t - 1)?
        .contiguous()?
        .flatten_all()?;
    let count = w.sum_all()?.to_scalar::<f32>()? as f64;
    if count == 0.0 {
        return Ok(LogitStats {
            mean_logit: 0.0,
            accuracy: 0.0,
            entropy: 0.0,
            count,
        });
    }
    let mean_per_row = z.mean(D::Minus1)?;
    let mean_logit = (&mean_per_row * &w)?.sum_all()?.to_scalar::<f32>()? as f64 / count;
    let hit = z.argmax(D::Minus1)?.eq(&targets)?.to_dtype(DType::F32)?;
    let accuracy = (hit * &w)?.sum_all()?.to_scalar::<f32>()? as f64 / count;
    let p = candle_nn::ops::softmax_last_dim(&z)?;
    let max = z.max_keepdim(D::Minus1)?;
    let lse = (z.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?.squeeze(1)?;
    let entropy_rows = (lse - (p * &z)?.sum(D::Minus1)?)?;
    let entropy = (entropy_rows * &w)?.sum_all()?.to_scalar::<f32>()? as f64 / count;
    Ok(LogitStats {
        mean_logit,
        accuracy,
        entropy,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collate_right_pads_and_masks_predicted_completion_tokens() {
        let a = Tokenized {
            ids: vec![5, 6, 7],
            completion_mask: vec![false, true, true],
        };
        let b = Tokenized {
            ids: vec![8, 9],
            completion_mask: vec![false, true],
        };
        let batch = collate(&[&a, &b], 0, &Device::Cpu).unwrap();
        assert_eq!(batch.ids.to_vec2::<u32>().unwrap(), vec![vec![5, 6, 7], vec![8, 9, 0]]);
        assert_eq!(batch.mask.to_vec2::<f32>().unwrap(), vec![vec![1.0, 1.0], vec![1.0, 0.0]]);
        assert_eq!(batch.num_tokens, 5);
    }
}

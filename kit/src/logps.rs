//! The one seam between trainers and the model: per-token log-probabilities of sequences.
//!
//! A batch is right-padded (pads after the last real token never influence earlier positions in a causal model, so
//! no attention mask is needed). Position j of the outputs scores token j+1 given tokens 0..=j.
use candle_core::{DType, Device, Tensor};

use crate::data::tokenize::Tokenized;
use crate::lm_head::{head_scores, HeadScores};
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
        return Err(Error::Input(
            "a batch needs at least one sequence of two or more tokens".into(),
        ));
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

/// Per-token log-probs (b, t − 1), differentiable w.r.t. whatever is trainable (0 where the mask is 0), and the
/// logit statistics of the k scored positions (no gradient) for metrics.
pub struct TokenScores {
    pub logps: Tensor,
    /// (row, position) of each of the k scored positions.
    pub positions: Vec<(usize, usize)>,
    /// Per scored position: mean logit, arg-max = target, entropy (see [`HeadScores`]).
    pub head: HeadScores,
}

/// Run the decoder on `batch` and score every next token the mask counts.
///
/// The LM head runs only on those positions: over a 262k vocabulary (Gemma) the head is most of the cost, and
/// prompts and padding need no logits.
pub fn token_scores(decoder: &Decoder, batch: &SeqBatch) -> Result<TokenScores> {
    token_scores_at(decoder, batch, 1.0)
}

/// [`token_scores`] of the distribution softmax(logits / `temperature`): GRPO scores completions under the
/// temperature they were sampled at (TRL divides the logits by `temperature` for the policy, π_old and the
/// reference alike).
pub fn token_scores_at(decoder: &Decoder, batch: &SeqBatch, temperature: f64) -> Result<TokenScores> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::Input(format!("temperature must be positive, got {temperature}")));
    }
    let (b, t) = batch.ids.dims2()?;
    let mask = batch.mask.to_vec2::<f32>()?;
    let ids = batch.ids.to_vec2::<u32>()?;
    let mut flat = vec![];
    let mut targets = vec![];
    let mut positions = vec![];
    for (r, row) in mask.iter().enumerate() {
        for (j, &m) in row.iter().enumerate() {
            if m != 0.0 {
                flat.push((r * (t - 1) + j) as u32);
                targets.push(ids[r][j + 1]);
                positions.push((r, j));
            }
        }
    }
    if flat.is_empty() {
        return Err(Error::Input(
            "nothing to score: every position of the batch is masked out".into(),
        ));
    }
    let k = flat.len();
    let dev = batch.ids.device();
    let hidden = decoder.forward_hidden(&batch.ids, None, None)?;
    let h = hidden.dim(2)?;
    let hidden = hidden.narrow(1, 0, t - 1)?.reshape((b * (t - 1), h))?;
    let index = Tensor::from_vec(flat, k, dev)?;
    // The head runs on the scored rows only, a chunk at a time (`lm_head`): no (k × vocab) logits are kept.
    let head = head_scores(decoder, &hidden.index_select(&index, 0)?, &targets, temperature)?;
    let logps = Tensor::zeros(b * (t - 1), DType::F32, dev)?
        .index_add(&index, &head.logps, 0)?
        .reshape((b, t - 1))?;
    Ok(TokenScores { logps, positions, head })
}

/// Σⱼ mask·logp per row: (b,).
pub fn sequence_logps(token_logps: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok((token_logps * mask)?.sum(1)?)
}

/// Statistics of the scored logits of rows `rows`, with no gradient.
///
/// The mean logit is averaged over the vocabulary too (TRL's `logits/chosen`); the accuracy compares the arg-max
/// with the target (`mean_token_accuracy`); the entropy is −Σ p log p of each predicted distribution.
pub struct LogitStats {
    pub mean_logit: f64,
    pub accuracy: f64,
    pub entropy: f64,
    pub count: f64,
}

pub fn logit_stats(scores: &TokenScores, rows: std::ops::Range<usize>) -> Result<LogitStats> {
    let (mut mean_logit, mut correct, mut entropy, mut count) = (0f64, 0f64, 0f64, 0f64);
    for (i, &(r, _)) in scores.positions.iter().enumerate() {
        if rows.contains(&r) {
            mean_logit += scores.head.mean_logit[i] as f64;
            correct += scores.head.correct[i] as u8 as f64;
            entropy += scores.head.entropy[i] as f64;
            count += 1.0;
        }
    }
    let n = count.max(1.0);
    Ok(LogitStats {
        mean_logit: mean_logit / n,
        accuracy: correct / n,
        entropy: entropy / n,
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
        assert_eq!(
            batch.mask.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 1.0], vec![1.0, 0.0]]
        );
        assert_eq!(batch.num_tokens, 5);
    }
}

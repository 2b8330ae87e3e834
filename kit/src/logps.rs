//! The one seam between trainers and the model: per-token log-probabilities of sequences.
//!
//! A batch is right-padded (pads after the last real token never influence earlier positions in a causal model, so
//! no attention mask is needed). Position j of the outputs scores token j+1 given tokens 0..=j.
use candle_core::{DType, Device, Tensor};

use crate::data::tokenize::Tokenized;
use crate::lm_head::{head_scores, HeadScores};
use crate::model::{Decoder, PackedGroup};
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
    scores(decoder, batch, temperature, true)
}

/// [`token_scores_at`] on the padded batch as it is, never packed (the reference the packed path is tested against).
pub fn token_scores_padded(decoder: &Decoder, batch: &SeqBatch, temperature: f64) -> Result<TokenScores> {
    scores(decoder, batch, temperature, false)
}

/// Tokens per packed row: sequences are laid end to end in rows of at most this many tokens (or of the longest
/// sequence, if longer). Attention costs width² a row, so rows stay short.
const PACK_WIDTH: usize = 256;

/// First fit, longest first: rows of item indices whose lengths sum to at most `capacity` (≥ the longest).
fn pack_rows(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let (mut rows, mut filled): (Vec<Vec<usize>>, Vec<usize>) = (vec![], vec![]);
    for i in order {
        match filled.iter().position(|&f| f + lengths[i] <= capacity) {
            Some(r) => {
                rows[r].push(i);
                filled[r] += lengths[i];
            }
            None => {
                rows.push(vec![i]);
                filled.push(lengths[i]);
            }
        }
    }
    rows
}

/// Sequences that run together in a packed row: `members` share their first `prefix` tokens, which run once
/// (0: one sequence, run whole).
#[derive(Debug, Clone, PartialEq)]
struct Group {
    prefix: usize,
    members: Vec<usize>,
}

impl Group {
    fn len(&self, lengths: &[usize]) -> usize {
        self.prefix + self.members.iter().map(|&r| lengths[r] - self.prefix).sum::<usize>()
    }
}

/// The groups of a batch: sequences with the same tokens before their first scored position (a prompt, whose
/// completions GRPO samples G of and DPO pairs two of) share them; the state at the first scored position itself
/// belongs to each sequence's own part. A group longer than `capacity` is cut into groups that each repeat the
/// prefix. Sequences with nothing scored are left out: no state of theirs is needed.
fn plan_groups(ids: &[Vec<u32>], lengths: &[usize], first_scored: &[Option<usize>], capacity: usize) -> Vec<Group> {
    let mut prompts: Vec<(&[u32], Vec<usize>)> = vec![];
    for (r, first) in first_scored.iter().enumerate() {
        let Some(j0) = *first else { continue };
        let key = &ids[r][..j0];
        match prompts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(r),
            None => prompts.push((key, vec![r])),
        }
    }
    let mut groups = vec![];
    for (key, members) in prompts {
        let p = key.len();
        if members.len() < 2 || p == 0 {
            groups.extend(members.into_iter().map(|r| Group {
                prefix: 0,
                members: vec![r],
            }));
            continue;
        }
        let mut current = Group {
            prefix: p,
            members: vec![],
        };
        for r in members {
            let fits = current.len(lengths) + lengths[r] - p <= capacity;
            if !current.members.is_empty() && !fits {
                groups.push(std::mem::replace(
                    &mut current,
                    Group {
                        prefix: p,
                        members: vec![],
                    },
                ));
            }
            current.members.push(r);
        }
        groups.push(current);
    }
    groups
}

fn scores(decoder: &Decoder, batch: &SeqBatch, temperature: f64, pack: bool) -> Result<TokenScores> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::Input(format!("temperature must be positive, got {temperature}")));
    }
    let (b, t) = batch.ids.dims2()?;
    let mask = batch.mask.to_vec2::<f32>()?;
    let ids = batch.ids.to_vec2::<u32>()?;
    let dev = batch.ids.device();
    let mut scored = vec![];
    let mut targets = vec![];
    let mut positions = vec![];
    let mut first_scored = vec![None; b];
    for (r, row) in mask.iter().enumerate() {
        for (j, &m) in row.iter().enumerate() {
            if m != 0.0 {
                first_scored[r].get_or_insert(j);
                scored.push((r * (t - 1) + j) as u32);
                targets.push(ids[r][j + 1]);
                positions.push((r, j));
            }
        }
    }
    if scored.is_empty() {
        return Err(Error::Input(
            "nothing to score: every position of the batch is masked out".into(),
        ));
    }
    // Where row r's position j lies among the decoder's output rows: base[r] + j, with base[r] = r·(t − 1)
    // padded; packed, its row's start plus the offset of its group in the row, plus (sharing a prefix) the
    // lengths of the suffixes before its own.
    let lengths = &batch.lengths;
    let pack = pack && lengths.len() == b;
    // No group is longer than the capacity: a group of one sequence is at most t long.
    let capacity = PACK_WIDTH.max(t);
    let groups = if pack {
        plan_groups(&ids, lengths, &first_scored, capacity)
    } else {
        vec![]
    };
    let group_lengths: Vec<usize> = groups.iter().map(|g| g.len(lengths)).collect();
    let rows = pack_rows(&group_lengths, capacity);
    let width = rows
        .iter()
        .map(|r| r.iter().map(|&g| group_lengths[g]).sum::<usize>())
        .max()
        .unwrap_or(0);
    let (hidden, base) = if pack && rows.len() * width < b * t {
        let mut base = vec![0; b];
        let mut packed = vec![];
        for (p, row) in rows.iter().enumerate() {
            let mut offset = p * width;
            let mut in_row = vec![];
            for &gi in row {
                let g = &groups[gi];
                if g.prefix == 0 {
                    let r = g.members[0];
                    base[r] = offset;
                    in_row.push(PackedGroup {
                        prefix: &ids[r][..lengths[r]],
                        suffixes: vec![],
                    });
                } else {
                    // Suffix m starts at offset + prefix + (suffixes before it); its position j sits j − prefix in.
                    let mut at = offset;
                    for &r in &g.members {
                        base[r] = at;
                        at += lengths[r] - g.prefix;
                    }
                    in_row.push(PackedGroup {
                        prefix: &ids[g.members[0]][..g.prefix],
                        suffixes: g.members.iter().map(|&r| &ids[r][g.prefix..lengths[r]]).collect(),
                    });
                }
                offset += group_lengths[gi];
            }
            packed.push(in_row);
        }
        let hidden = decoder.forward_grouped_hidden(&packed)?; // (rows, width, hidden)
        let h = hidden.dim(2)?;
        (hidden.reshape((rows.len() * width, h))?, base)
    } else {
        let hidden = decoder.forward_hidden(&batch.ids, None, None)?;
        let h = hidden.dim(2)?;
        let hidden = hidden.narrow(1, 0, t - 1)?.reshape((b * (t - 1), h))?;
        (hidden, (0..b).map(|r| r * (t - 1)).collect())
    };
    let flat: Vec<u32> = positions.iter().map(|&(r, j)| (base[r] + j) as u32).collect();
    let k = flat.len();
    let index = Tensor::from_vec(flat, k, dev)?;
    // The head runs on the scored rows only, a chunk at a time (`lm_head`): no (k × vocab) logits are kept.
    let head = head_scores(decoder, &hidden.index_select(&index, 0)?, &targets, temperature)?;
    let logps = Tensor::zeros(b * (t - 1), DType::F32, dev)?
        .index_add(&Tensor::from_vec(scored, k, dev)?, &head.logps, 0)?
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
    fn packed_rows_hold_every_sequence_once_within_capacity() {
        let lengths = [78, 78, 55, 56, 41, 41, 51, 51, 300];
        let rows = pack_rows(&lengths, 300); // capacity: the longest sequence (above PACK_WIDTH)
        let mut seen: Vec<usize> = rows.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for row in &rows {
            assert!(row.iter().map(|&i| lengths[i]).sum::<usize>() <= 300, "{rows:?}");
        }
        // 751 tokens: 300 alone would leave 451 to share one more row of 300 and a third.
        assert_eq!(rows.len(), 3, "{rows:?}");
    }

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

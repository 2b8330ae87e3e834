//! Preference pairs as both pair trainers read them (DPO and reward models): a prompt with a chosen and a rejected
//! completion, tokenized as two sequences that share the prompt.
use crate::data::tokenize::{tokenize_pair, Tokenized, TokenizedPair, TruncationMode};
use crate::data::{LabelledPair, Origin, PreferenceRow};
use crate::model::Model;
use crate::{Error, Result};

/// A tokenized pair: the two sequences, DPO's reference log-probs once computed, and the row's `margin`.
#[derive(Debug, Clone)]
pub struct PairExample {
    pub chosen: Tokenized,
    pub rejected: Tokenized,
    /// log π_ref of (chosen, rejected), once the reference has scored them (DPO).
    pub ref_logps: Option<(f32, f32)>,
    /// The row's `margin` column, if it has one (a reward model's margin loss reads it).
    pub margin: Option<f32>,
}

impl PairExample {
    /// Whether the chosen completion has fewer tokens than the rejected one (both share the prompt's tokens).
    pub fn chosen_is_shorter(&self) -> bool {
        self.chosen.len() < self.rejected.len()
    }
}

/// Swapping a scored pair swaps its reference log-probs with it, so label-noise runs can share one reference pass.
impl LabelledPair for PairExample {
    fn swap_labels(&mut self) {
        std::mem::swap(&mut self.chosen, &mut self.rejected);
        self.ref_logps = self.ref_logps.map(|(c, r)| (r, c));
    }
}

/// How pairs are cut to length: each sequence (prompt + completion) to `max_length` tokens, from the side
/// `truncation_mode` says; rows left without a completion token are an error, or dropped with `skip_invalid_rows`.
#[derive(Debug, Clone, Copy)]
pub struct PairLimits {
    pub max_length: Option<usize>,
    pub truncation_mode: TruncationMode,
    pub skip_invalid_rows: bool,
}

/// Tokenize preference rows; an unusable row is an error naming its `file:line` (or skipped when asked).
pub fn prepare_pairs(model: &Model, rows: &[(Origin, PreferenceRow)], limits: PairLimits) -> Result<Vec<PairExample>> {
    let mut out = Vec::with_capacity(rows.len());
    for (at, row) in rows {
        let pair: TokenizedPair = match tokenize_pair(&model.tokenizer, row) {
            Ok(p) => p,
            Err(_) if limits.skip_invalid_rows => continue,
            Err(e) => return Err(Error::msg(format!("{at}: {e}"))),
        };
        let chosen = pair.sequence(true, limits.max_length, limits.truncation_mode);
        let rejected = pair.sequence(false, limits.max_length, limits.truncation_mode);
        let usable = |t: &Tokenized| t.len() >= 2 && t.completion_mask[1..].iter().any(|&m| m);
        if !usable(&chosen) || !usable(&rejected) {
            if limits.skip_invalid_rows {
                continue;
            }
            return Err(Error::Input(format!(
                "{at}: no completion token left after truncation to max_length {} (raise max_length, or pass skip_invalid_rows to drop such rows)",
                limits.max_length.map_or("none".to_string(), |m| m.to_string())
            )));
        }
        out.push(PairExample {
            chosen,
            rejected,
            ref_logps: None,
            margin: row.margin.map(|m| m as f32),
        });
    }
    Ok(out)
}

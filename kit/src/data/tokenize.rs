//! Rows → token ids with loss masks, as TRL tokenizes them.
//!
//! - Text: the prompt gets the tokenizer's special tokens (BOS), the completion does not and ends with EOS.
//! - Conversations: the chat template renders the prompt with the generation prompt and the whole conversation
//!   without; the completion is what the second adds to the first (its end-of-turn token included).
//! - Multi-turn `messages`: every assistant turn is a completion (assistant-only loss), the rest is context.
use serde::{Deserialize, Serialize};

use super::formats::{PreferenceRow, SftRow, Turns};
use crate::tokenizer::{Message, Tokenizer};
use crate::{Error, Result};

/// Token ids and, per token, whether the loss counts it (it belongs to a completion).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub completion_mask: Vec<bool>,
}

/// A tokenized preference pair: the prompt once, and the two completions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedPair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

/// Which end of an over-long sequence to keep (TRL's `truncation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TruncationMode {
    /// Drop tokens from the end.
    #[default]
    KeepStart,
    /// Drop tokens from the start (of the prompt first, keeping the completion).
    KeepEnd,
}

impl Tokenized {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Append `ids`, counted as completion (trained on) or context.
    pub fn push(&mut self, ids: &[u32], completion: bool) {
        self.ids.extend_from_slice(ids);
        self.completion_mask.extend(std::iter::repeat_n(completion, ids.len()));
    }

    /// Cut to at most `max_len` tokens.
    pub fn truncate(&mut self, max_len: usize, mode: TruncationMode) {
        if self.ids.len() <= max_len {
            return;
        }
        match mode {
            TruncationMode::KeepStart => {
                self.ids.truncate(max_len);
                self.completion_mask.truncate(max_len);
            }
            TruncationMode::KeepEnd => {
                let cut = self.ids.len() - max_len;
                self.ids.drain(..cut);
                self.completion_mask.drain(..cut);
            }
        }
    }
}

/// Token ids of a prompt (generation prompt included for conversations): what a model is asked to continue.
pub fn prompt_ids(tok: &Tokenizer, prompt: &Turns) -> Result<Vec<u32>> {
    match prompt {
        Turns::Text(t) => tok.encode(t, true),
        // The rendered template already holds BOS where the model wants it.
        Turns::Chat(m) => tok.encode(&tok.apply_chat_template(m, true)?, false),
    }
}

/// The prompt text a model is asked to continue (chat template applied to conversations).
pub fn prompt_text(tok: &Tokenizer, prompt: &Turns) -> Result<String> {
    match prompt {
        Turns::Text(t) => Ok(t.clone()),
        Turns::Chat(m) => tok.apply_chat_template(m, true),
    }
}

fn eos(tok: &Tokenizer) -> Result<u32> {
    tok.eos_token_id()
        .ok_or_else(|| Error::msg("the tokenizer has no EOS token; kit needs one to end completions"))
}

/// (prompt ids, completion ids) of a prompt and its completion.
pub fn prompt_completion_ids(tok: &Tokenizer, prompt: &Turns, completion: &Turns) -> Result<(Vec<u32>, Vec<u32>)> {
    match (prompt, completion) {
        (Turns::Text(p), Turns::Text(c)) => {
            let mut comp = tok.encode(c, false)?;
            comp.push(eos(tok)?);
            Ok((tok.encode(p, true)?, comp))
        }
        (Turns::Chat(p), Turns::Chat(c)) => {
            let prompt_text = tok.apply_chat_template(p, true)?;
            let all: Vec<Message> = p.iter().chain(c).cloned().collect();
            let full_text = tok.apply_chat_template(&all, false)?;
            let Some(completion_text) = full_text.strip_prefix(prompt_text.as_str()) else {
                return Err(Error::msg(
                    "the chat template renders the prompt differently inside the whole conversation; \
                     cannot tell the completion apart",
                ));
            };
            let prompt_ids = tok.encode(&prompt_text, false)?;
            let full_ids = tok.encode(&full_text, false)?;
            // As TRL: split the tokenized conversation after the prompt's tokens when they agree, else tokenize the
            // completion text on its own.
            if full_ids.starts_with(&prompt_ids) {
                Ok((prompt_ids.clone(), full_ids[prompt_ids.len()..].to_vec()))
            } else {
                Ok((prompt_ids, tok.encode(completion_text, false)?))
            }
        }
        _ => Err(Error::msg(
            "prompt and completion must both be text or both be conversations",
        )),
    }
}

/// One SFT row → ids + completion mask. `completion_only_loss` = false makes every token count.
pub fn tokenize_sft(tok: &Tokenizer, row: &SftRow, completion_only_loss: bool) -> Result<Tokenized> {
    let mut out = Tokenized::default();
    match row {
        SftRow::LanguageModeling(Turns::Text(t)) => {
            out.push(&tok.encode(t, true)?, true);
            out.push(&[eos(tok)?], true);
        }
        SftRow::LanguageModeling(Turns::Chat(msgs)) => {
            // Assistant turns are completions, everything before each of them is context.
            let mut done = 0;
            for (i, m) in msgs.iter().enumerate() {
                if m.role != "assistant" {
                    continue;
                }
                let (p, c) =
                    prompt_completion_ids(tok, &Turns::Chat(msgs[..i].to_vec()), &Turns::Chat(vec![m.clone()]))?;
                if p.len() < done || !p.starts_with(&out.ids[..done]) {
                    return Err(Error::msg(
                        "the chat template re-renders earlier turns differently; use prompt/completion rows",
                    ));
                }
                let ctx = p[done..].to_vec();
                out.push(&ctx, false);
                out.push(&c, true);
                done = out.ids.len();
            }
            if done == 0 {
                return Err(Error::Input("`messages` has no assistant turn to learn from".into()));
            }
        }
        SftRow::PromptCompletion { prompt, completion } => {
            let (p, c) = prompt_completion_ids(tok, prompt, completion)?;
            out.push(&p, false);
            out.push(&c, true);
        }
    }
    if !completion_only_loss {
        out.completion_mask.iter_mut().for_each(|m| *m = true);
    }
    Ok(out)
}

/// One preference row → prompt, chosen and rejected ids.
pub fn tokenize_pair(tok: &Tokenizer, row: &PreferenceRow) -> Result<TokenizedPair> {
    let (prompt, chosen) = prompt_completion_ids(tok, &row.prompt, &row.chosen)?;
    let (prompt2, rejected) = prompt_completion_ids(tok, &row.prompt, &row.rejected)?;
    if prompt != prompt2 {
        return Err(Error::msg(
            "the prompt tokenizes differently before `chosen` and `rejected`",
        ));
    }
    if chosen.is_empty() || rejected.is_empty() {
        return Err(Error::Input(
            "`chosen` or `rejected` is empty after tokenization".into(),
        ));
    }
    Ok(TokenizedPair {
        prompt,
        chosen,
        rejected,
    })
}

impl TokenizedPair {
    /// prompt + completion as one sequence with its completion mask, cut to `max_length` (keep_end drops prompt
    /// tokens from the start first, as TRL's DPO does).
    pub fn sequence(&self, chosen: bool, max_length: Option<usize>, mode: TruncationMode) -> Tokenized {
        let mut t = Tokenized::default();
        t.push(&self.prompt, false);
        t.push(if chosen { &self.chosen } else { &self.rejected }, true);
        if let Some(max) = max_length {
            t.truncate(max, mode);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_asked_end() {
        let mut t = Tokenized {
            ids: vec![1, 2, 3, 4, 5],
            completion_mask: vec![false, false, true, true, true],
        };
        let mut u = t.clone();
        t.truncate(3, TruncationMode::KeepStart);
        assert_eq!((t.ids, t.completion_mask), (vec![1, 2, 3], vec![false, false, true]));
        u.truncate(3, TruncationMode::KeepEnd);
        assert_eq!((u.ids, u.completion_mask), (vec![3, 4, 5], vec![true, true, true]));
    }
}

//! Look at a dataset the way a trainer sees it: each row rendered with the model's tokenizer and chat template, cut
//! into the part the model only reads (no loss) and the part it learns from (the loss), with token counts. What a
//! notebook shows before training, and what to read when a run learns nothing.
use std::path::Path;

use serde_json::{Map, Value};

use super::files::DatasetFiles;
use super::formats::{load_preference, load_sft, read_rows};
use super::tokenize::{tokenize_pair, tokenize_sft};
use crate::tokenizer::Tokenizer;
use crate::Result;

/// One SFT row as the SFT trainer tokenizes it (completion-only loss, TRL's default).
#[derive(Debug, Clone, PartialEq)]
pub struct SftPreview {
    /// Line in the file.
    pub line: usize,
    /// The text the loss ignores (prompt, template, earlier turns), decoded from the trained ids.
    pub context: String,
    /// The text the loss is computed on, decoded from the trained ids.
    pub completion: String,
    /// Tokens of `context`.
    pub context_tokens: usize,
    /// Tokens of `completion`.
    pub completion_tokens: usize,
}

/// One preference pair as DPO and the reward trainer see it: the rendered prompt, both answers, and the row's other
/// columns (e.g. `flaw` in `pref_ja`).
#[derive(Debug, Clone, PartialEq)]
pub struct PairPreview {
    /// Line in the file.
    pub line: usize,
    /// The prompt as the model reads it (chat template applied to a conversation), decoded from the trained ids.
    pub prompt: String,
    /// The preferred answer (the loss part of the chosen sequence).
    pub chosen: String,
    /// The other answer.
    pub rejected: String,
    /// Tokens of `prompt`.
    pub prompt_tokens: usize,
    /// Tokens of `chosen`.
    pub chosen_tokens: usize,
    /// Tokens of `rejected`.
    pub rejected_tokens: usize,
    /// Columns besides prompt/chosen/rejected/margin.
    pub columns: Map<String, Value>,
}

/// A file's size and its first rows, rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview<T> {
    /// Rows in the whole file.
    pub total_rows: usize,
    /// The first rows, in file order.
    pub rows: Vec<T>,
}

/// The first `n` rows of an SFT file (`text`, `messages` or `prompt` + `completion`), or of a dataset folder's
/// training file (see [`DatasetFiles`]).
pub fn preview_sft(tokenizer: &Tokenizer, data: impl AsRef<Path>, n: usize) -> Result<Preview<SftPreview>> {
    let loaded = load_sft(DatasetFiles::train_file(data)?, false)?;
    let mut rows = vec![];
    for (origin, row) in loaded.rows.iter().take(n) {
        let t = tokenize_sft(tokenizer, row, true)?;
        let part = |learn: bool| -> Vec<u32> {
            t.ids
                .iter()
                .zip(&t.completion_mask)
                .filter(|(_, &m)| m == learn)
                .map(|(&id, _)| id)
                .collect()
        };
        let (context, completion) = (part(false), part(true));
        rows.push(SftPreview {
            line: origin.line,
            context: tokenizer.decode(&context, false)?,
            completion: tokenizer.decode(&completion, false)?,
            context_tokens: context.len(),
            completion_tokens: completion.len(),
        });
    }
    Ok(Preview {
        total_rows: loaded.rows.len(),
        rows,
    })
}

/// The first `n` pairs of a preference file (explicit or implicit prompt), or of a dataset folder's training file
/// (see [`DatasetFiles`]).
pub fn preview_preference(tokenizer: &Tokenizer, data: impl AsRef<Path>, n: usize) -> Result<Preview<PairPreview>> {
    let path = DatasetFiles::train_file(data)?;
    let loaded = load_preference(&path, false)?;
    let raw = read_rows(&path)?;
    let mut rows = vec![];
    for ((origin, row), (_, value)) in loaded.rows.iter().zip(&raw).take(n) {
        let t = tokenize_pair(tokenizer, row)?;
        let mut columns = value.as_object().cloned().unwrap_or_default();
        for k in ["prompt", "chosen", "rejected", "margin"] {
            columns.remove(k);
        }
        rows.push(PairPreview {
            line: origin.line,
            prompt: tokenizer.decode(&t.prompt, false)?,
            chosen: tokenizer.decode(&t.chosen, false)?,
            rejected: tokenizer.decode(&t.rejected, false)?,
            prompt_tokens: t.prompt.len(),
            chosen_tokens: t.chosen.len(),
            rejected_tokens: t.rejected.len(),
            columns,
        });
    }
    Ok(Preview {
        total_rows: loaded.rows.len(),
        rows,
    })
}

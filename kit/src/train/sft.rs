//! Supervised fine-tuning: maximise the likelihood of the completions.
//!
//! L = −Σᵢ mᵢ log p(xᵢ | x<ᵢ) / Σᵢ mᵢ, with mᵢ = 1 on completion (assistant) tokens by default — the prompt is
//! context, not something to imitate — and on every token when `completion_only_loss` is off or the row is plain
//! text. Metrics as TRL's SFTTrainer: `mean_token_accuracy` (arg-max = next token) and `entropy`.
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::build::ObjectiveConfig;
use super::{Metrics, Objective, StepInfo, StepOutput, TrainOutput, Trainer, TrainingArguments};
use crate::data::tokenize::{tokenize_sft, Tokenized, TruncationMode};
use crate::data::{load_sft, Loaded, Origin, SftRow};
use crate::logps::{collate, logit_stats, token_scores};
use crate::lora::Adapter;
use crate::metrics::keys;
use crate::model::Model;
use crate::{Error, Result};

/// TRL's `SFTConfig`: the shared `TrainingArguments` (flattened: the same keys at the top level) and SFT's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct SftConfig {
    /// The settings every trainer shares.
    #[serde(flatten)]
    pub args: TrainingArguments,
    /// Longest tokenized example; longer ones are cut as `truncation_mode` says; unset: no limit. TRL default: 1024.
    pub max_length: Option<usize>,
    /// Which end of an over-long example to keep. TRL default: keep_start.
    pub truncation_mode: TruncationMode,
    /// Loss on the completion (prompt-completion rows) and assistant turns (conversations) only; false: on every
    /// token. TRL's `completion_only_loss` / `assistant_only_loss`; TRL default: on for prompt-completion data.
    pub completion_only_loss: bool,
    /// Skip malformed rows (reporting how many) instead of stopping at the first (kit's own).
    pub skip_invalid_rows: bool,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            args: TrainingArguments {
                learning_rate: 2e-5,
                ..Default::default()
            },
            max_length: Some(1024),
            truncation_mode: TruncationMode::KeepStart,
            completion_only_loss: true,
            skip_invalid_rows: false,
        }
    }
}

/// The SFT objective over tokenized examples.
pub struct Sft {
    pub pad_token_id: u32,
}

impl Sft {
    pub fn new(model: &Model) -> Self {
        Sft {
            pad_token_id: model.pad_token_id(),
        }
    }
}

impl Objective for Sft {
    type Example = Tokenized;

    fn name(&self) -> &'static str {
        "sft"
    }

    /// Predicted completion tokens (the positions the loss counts).
    fn loss_items(&self, _micro: usize, batch: &[&Tokenized]) -> Option<usize> {
        Some(
            batch
                .iter()
                .map(|t| t.completion_mask.iter().skip(1).filter(|&&m| m).count())
                .sum(),
        )
    }

    fn loss(&mut self, model: &Model, _: &Adapter, batch: &[&Tokenized], at: StepInfo) -> Result<StepOutput> {
        let batch = collate(batch, self.pad_token_id, model.device())?;
        let scores = token_scores(&model.decoder, &batch)?;
        let count = batch.mask.sum_all()?.to_scalar::<f32>()? as f64;
        if count == 0.0 {
            return Err(Error::Input(
                "every completion token of this batch was truncated away; raise max_length".into(),
            ));
        }
        // Token mean over this micro-batch, or over the whole optimizer step when the loop gives its total.
        let denom = at.items_in_step.map_or(count, |n| n.max(1) as f64);
        let loss = ((&scores.logps * &batch.mask)?.sum_all()? * (-1.0 / denom))?;
        let b = batch.lengths.len();
        let stats = logit_stats(&scores, 0..b)?;
        let mut metrics = Metrics::new();
        metrics.insert(keys::MEAN_TOKEN_ACCURACY.into(), stats.accuracy);
        metrics.insert(keys::ENTROPY.into(), stats.entropy);
        Ok(StepOutput {
            loss,
            metrics,
            num_tokens: batch.num_tokens,
        })
    }
}

/// Tokenize rows as SFT does; an example that cannot be used is an error naming its `file:line`.
pub fn prepare(model: &Model, rows: &[(Origin, SftRow)], cfg: &SftConfig) -> Result<Vec<Tokenized>> {
    let mut out = Vec::with_capacity(rows.len());
    for (at, row) in rows {
        let mut t = tokenize_sft(&model.tokenizer, row, cfg.completion_only_loss)
            .map_err(|e| Error::msg(format!("{at}: {e}")))?;
        if let Some(max) = cfg.max_length {
            t.truncate(max, cfg.truncation_mode);
        }
        if t.len() < 2 || !t.completion_mask[1..].iter().any(|&m| m) {
            let msg = format!(
                "{at}: no completion token left after truncation to max_length {} (raise max_length, or pass skip_invalid_rows to drop such rows)",
                cfg.max_length.map_or("none".to_string(), |m| m.to_string())
            );
            if cfg.skip_invalid_rows {
                continue;
            }
            return Err(Error::Input(msg));
        }
        out.push(t);
    }
    Ok(out)
}

impl ObjectiveConfig for SftConfig {
    type Row = SftRow;
    type Objective = Sft;
    fn args(&self) -> &TrainingArguments {
        &self.args
    }
    fn load(&self, path: &Path) -> Result<Loaded<SftRow>> {
        load_sft(path, self.skip_invalid_rows)
    }
    fn prepare(&self, model: &Model, rows: &[(Origin, SftRow)]) -> Result<Vec<Tokenized>> {
        prepare(model, rows, self)
    }
    fn into_objective(self, model: &Model, _: &Adapter, _: &mut [Tokenized], _: &mut [Tokenized]) -> Result<Sft> {
        Ok(Sft::new(model))
    }
}

/// The SFT trainer for rows already made (e.g. prompts paired with worked solutions): TRL's
/// `SFTTrainer(model, args, train_dataset=…, eval_dataset=…)`; see [`Trainer::from_rows`].
pub fn sft_trainer_from_rows<'a>(
    model: &'a Model,
    adapter: &'a Adapter,
    train: &[(Origin, SftRow)],
    eval: &[(Origin, SftRow)],
    cfg: &SftConfig,
) -> Result<Trainer<'a, Sft>> {
    Trainer::from_rows(model, adapter, cfg.clone(), train, eval)
}

/// Read, tokenize and train in one call: `train_sft(&model, &adapter, "datasets/sft_ja", None, &cfg)` (a file, or
/// a dataset folder: see [`Trainer::from_files`]).
pub fn train_sft(
    model: &Model,
    adapter: &Adapter,
    data: impl AsRef<Path>,
    eval_file: Option<&Path>,
    cfg: &SftConfig,
) -> Result<TrainOutput> {
    Trainer::from_files(model, adapter, cfg.clone(), data, eval_file)?.train()
}

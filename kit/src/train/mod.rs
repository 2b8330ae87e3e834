//! The training loop shared by every trainer: data order, micro-batches and gradient accumulation, clipping, AdamW,
//! the schedule, evaluation, metrics lines, checkpoints and resume, NaN and Ctrl-C handling.
//!
//! A trainer is an [`Objective`]: it turns a micro-batch of its examples into a differentiable loss and metrics.
//! Everything else lives here once, as named phases that read like nanoGPT's loop:
//!
//! ```text
//! begin                      plan the run, build AdamW, resume from a checkpoint
//! for each optimizer step:
//!     accumulate             micro-batches: forward, backward, gradients summed
//!     optimizer_step         clip the gradient norm, AdamW at the schedule's learning rate
//!     step_end               callbacks decide: log? evaluate? save? stop?
//!     log / evaluate / save
//! finish                     final adapter, plots, the run's summary
//! ```
//! Whatever watches or steers a run (progress, charts, a KL budget, early stopping) is a [`TrainerCallback`].
use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};

use crate::lora::Adapter;
use crate::model::Model;
use crate::Result;

pub mod args;
pub mod build;
pub mod callbacks;
pub mod checkpoint;
pub mod completions;
pub mod dpo;
pub mod grpo;
mod grpo_config;
pub mod kl;
pub mod optim;
pub mod pairs;
pub mod reward_model;
pub mod sft;
mod trainer;

pub use crate::metrics::Metrics;
pub use args::TrainingArguments;
pub use build::ObjectiveConfig;
pub use callbacks::{
    EarlyStopping, OnEvaluate, OnLog, PlotSpec, PrintProgress, SavePlots, StopWhen, TrainerCallback, TrainerControl,
};
pub use checkpoint::TrainerState;
pub use trainer::Trainer;

/// What one micro-batch gives back.
pub struct StepOutput {
    /// Differentiable loss (a scalar) of this micro-batch.
    pub loss: Tensor,
    pub metrics: Metrics,
    /// Real tokens processed (TRL's `num_tokens` adds these up).
    pub num_tokens: usize,
}

/// What the loop knows at a step, for objectives that need it (GRPO seeds its sampling with it).
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// Optimizer step (0-based).
    pub step: usize,
    /// Micro-batch within the step (gradient accumulation).
    pub micro: usize,
    pub seed: u64,
    /// Evaluation on the held-out split (no gradient is taken).
    pub eval: bool,
    /// For objectives that count loss items ([`Objective::loss_items`]): the total over every micro-batch of this
    /// optimizer step. The loss is then Σ / this total, so accumulated micro-batches average over the whole step.
    pub items_in_step: Option<usize>,
}

/// One trainer's loss.
pub trait Objective {
    type Example;
    /// Short name ("sft", "dpo", ...) recorded in checkpoints.
    fn name(&self) -> &'static str;
    /// Loss and metrics of one micro-batch, with gradients flowing to the adapter (and `extra_vars`).
    fn loss(&mut self, model: &Model, adapter: &Adapter, batch: &[&Self::Example], at: StepInfo) -> Result<StepOutput>;
    /// Called once per optimizer step with all its micro-batches, before the first forward pass (GRPO samples the
    /// whole generation batch here, as TRL does, so that rewards are scaled and tokens counted over all of it).
    fn prepare_step(
        &mut self,
        _model: &Model,
        _adapter: &Adapter,
        _micro_batches: &[Vec<&Self::Example>],
        _at: StepInfo,
    ) -> Result<()> {
        Ok(())
    }
    /// Called at the start of every evaluation pass, before its first batch: an objective that keeps per-example
    /// results of the evaluation (DPO's per-pair rewards) starts them afresh here.
    fn begin_evaluation(&mut self) {}
    /// How many items (SFT: completion tokens) the loss of micro-batch `micro` averages over, when that is known
    /// before its forward pass. Then the loop normalises by the step's total, as transformers' `num_items_in_batch`
    /// does, and gradient accumulation over unequal lengths equals one big batch; `None` means a mean per
    /// micro-batch.
    fn loss_items(&self, _micro: usize, _batch: &[&Self::Example]) -> Option<usize> {
        None
    }
    /// Examples per micro-batch for `per_device_batch` (GRPO: prompts = completions / num_generations).
    fn batch_examples(&self, per_device_batch: usize) -> usize {
        per_device_batch
    }
    /// Trainable variables besides the adapter's (a reward model's head).
    fn extra_vars(&self) -> Vec<Var> {
        vec![]
    }
    /// Give `extra_vars` new `Var`s with the same values, as the trainer does for the adapter when it starts (see
    /// [`Adapter::renew_vars`]).
    fn renew_vars(&mut self) -> Result<()> {
        Ok(())
    }
    /// Write the trainer's own files next to the adapter (a reward model's head).
    fn save_extra(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Read them back when resuming.
    fn load_extra(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Charts worth drawing from the metrics: (file stem, title, metric keys).
    fn plots(&self) -> Vec<PlotSpec> {
        use crate::metrics::keys;
        vec![("loss", "training loss", vec![keys::LOSS.into(), keys::EVAL_LOSS.into()])]
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    pub global_step: usize,
    /// Mean training loss over the run's logged steps.
    pub training_loss: f64,
    /// Every metrics line written (also in `output_dir/metrics.jsonl`).
    pub log_history: Vec<Metrics>,
    /// Where the final adapter is (or the interrupt checkpoint).
    pub adapter_dir: PathBuf,
    pub interrupted: bool,
    /// Wall-clock seconds of this call (transformers' `train_runtime`).
    pub train_runtime: f64,
}

impl TrainOutput {
    /// The values of one metric over the run: (step, value), finite values only (see [`crate::metrics::series`]).
    pub fn series(&self, key: &str) -> Vec<(f64, f64)> {
        crate::metrics::series(&self.log_history, key)
    }
}

/// The weight of one micro-batch's loss in its optimizer step. A loss normalised by the step's total item count
/// ([`Objective::loss_items`]) is summed over the micro-batches; a per-micro-batch mean is averaged, as transformers
/// divides by `gradient_accumulation_steps`.
pub fn micro_batch_weight(items_in_step: Option<usize>, gradient_accumulation_steps: usize) -> f64 {
    match items_in_step {
        Some(_) => 1.0,
        None => 1.0 / gradient_accumulation_steps as f64,
    }
}

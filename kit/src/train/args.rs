//! `TrainingArguments`: the knobs every trainer shares, named and defaulted as in transformers/TRL.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::optim::SchedulerType;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingArguments {
    /// Checkpoints, the final adapter, `metrics.jsonl` and plots go here.
    pub output_dir: PathBuf,
    pub learning_rate: f64,
    pub lr_scheduler_type: SchedulerType,
    /// Warm-up steps; when 0, `warmup_ratio` × total steps (rounded up).
    pub warmup_steps: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// Gradient-norm clipping (0 = off).
    pub max_grad_norm: f64,
    pub per_device_train_batch_size: usize,
    pub per_device_eval_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub num_train_epochs: f64,
    /// When set, overrides `num_train_epochs`.
    pub max_steps: Option<usize>,
    pub seed: u64,
    /// Write a metrics line every this many optimizer steps (metrics are averaged over them).
    pub logging_steps: usize,
    /// Evaluate on the held-out split every this many steps (and at the end); `None` = only at the end.
    pub eval_steps: Option<usize>,
    /// Also evaluate before the first step (the starting point of the held-out curves).
    pub eval_on_start: bool,
    /// Save a checkpoint every this many steps; `None` = only at the end.
    pub save_steps: Option<usize>,
    /// Keep at most this many `checkpoint-*` folders (oldest removed first).
    pub save_total_limit: Option<usize>,
    /// A checkpoint folder to continue from, or "latest" for the newest one in `output_dir`.
    pub resume_from_checkpoint: Option<String>,
    /// Show a progress bar (terminal) or progress lines (notebook, log file).
    pub disable_tqdm: bool,
}

impl Default for TrainingArguments {
    fn default() -> Self {
        TrainingArguments {
            output_dir: PathBuf::from("outputs"),
            learning_rate: 5e-5,
            lr_scheduler_type: SchedulerType::Linear,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            per_device_train_batch_size: 8,
            per_device_eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            num_train_epochs: 3.0,
            max_steps: None,
            seed: 42,
            logging_steps: 10,
            eval_steps: None,
            eval_on_start: false,
            save_steps: None,
            save_total_limit: None,
            resume_from_checkpoint: None,
            disable_tqdm: false,
        }
    }
}

impl TrainingArguments {
    pub fn warmup(&self, total: usize) -> usize {
        if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            (self.warmup_ratio * total as f64).ceil() as usize
        }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field: &str, msg: &str| Err(crate::Error::Input(format!("TrainingArguments.{field}: {msg}")));
        if self.per_device_train_batch_size == 0 {
            return bad("per_device_train_batch_size", "must be at least 1");
        }
        if self.gradient_accumulation_steps == 0 {
            return bad("gradient_accumulation_steps", "must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return bad("learning_rate", "must be a non-negative number");
        }
        if self.logging_steps == 0 {
            return bad("logging_steps", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", "must be in [0, 1]");
        }
        Ok(())
    }
}

//! `TrainingArguments`: the knobs every trainer shares, named and defaulted as in transformers/TRL.
use std::path::PathBuf;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::optim::{SchedulerType, POLYNOMIAL_LR_END};
use crate::smoke::{smoke_mode, SMOKE};

/// Every field is a `kit sft|dpo|grpo|reward` flag of the same name; a field's doc is that flag's help text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct TrainingArguments {
    /// Folder for checkpoints, the final adapter, `metrics.jsonl` and the plots. transformers default:
    /// "trainer_output".
    pub output_dir: PathBuf,
    /// Initial AdamW learning rate (the peak, after warm-up). transformers default: 5e-5; TRL: 2e-5 for SFT, 1e-6
    /// for DPO and GRPO, 1e-4 for reward models.
    pub learning_rate: f64,
    /// How the learning rate moves from its peak over training, as transformers' schedulers. transformers default:
    /// linear.
    pub lr_scheduler_type: SchedulerType,
    /// Optimizer steps of linear warm-up from 0 to `learning_rate`; when 0, `warmup_ratio` × total steps (rounded
    /// up). transformers default: 0.
    pub warmup_steps: usize,
    /// Warm-up as a fraction of the total steps, in [0, 1]; used when `warmup_steps` is 0. transformers default: 0.
    pub warmup_ratio: f64,
    /// Decoupled AdamW weight decay on the trainable (LoRA) weights. transformers default: 0.
    pub weight_decay: f64,
    /// AdamW's β₁ (decay of the gradient's running mean). transformers default: 0.9.
    pub adam_beta1: f64,
    /// AdamW's β₂ (decay of the squared gradient's running mean). transformers default: 0.999.
    pub adam_beta2: f64,
    /// AdamW's ε, added to the denominator for stability. transformers default: 1e-8.
    pub adam_epsilon: f64,
    /// Clip the global gradient norm to this value before each step; 0 turns clipping off. transformers default:
    /// 1.0.
    pub max_grad_norm: f64,
    /// Examples per micro-batch (GRPO: completions, a multiple of `num_generations`). transformers default: 8.
    pub per_device_train_batch_size: usize,
    /// Examples per batch when evaluating on the held-out split. transformers default: 8.
    pub per_device_eval_batch_size: usize,
    /// Micro-batches whose gradients add up to one optimizer step. transformers default: 1.
    pub gradient_accumulation_steps: usize,
    /// Passes over the training data, used when `max_steps` is unset. transformers default: 3.
    pub num_train_epochs: f64,
    /// Total optimizer steps; overrides `num_train_epochs`. -1 or unset: train for `num_train_epochs`.
    /// transformers default: -1.
    #[serde(deserialize_with = "minus_one_is_none")]
    pub max_steps: Option<usize>,
    /// Seed of the data order, dropout, sampling and the LoRA initialisation (CLI). transformers default: 42.
    pub seed: u64,
    /// Write a metrics line every this many optimizer steps (averaged over them). TRL default: 10 (transformers:
    /// 500).
    pub logging_steps: usize,
    /// Evaluate on the held-out split every this many steps and at the end; unset: only at the end.
    /// transformers default: unset.
    pub eval_steps: Option<usize>,
    /// Also evaluate before the first step (the starting point of the held-out curves). transformers default:
    /// false.
    pub eval_on_start: bool,
    /// Save a checkpoint every this many steps; unset: only at the end (transformers default: 500).
    pub save_steps: Option<usize>,
    /// Keep at most this many `checkpoint-*` folders, removing the oldest first; unset: keep all. transformers
    /// default: unset.
    pub save_total_limit: Option<usize>,
    /// A checkpoint folder to continue from, or "latest" for the newest in `output_dir` (the bare flag means
    /// "latest"). transformers default: unset.
    pub resume_from_checkpoint: Option<String>,
    /// Turn off the progress display (bar in a terminal, lines in a notebook or log). transformers default: false.
    pub disable_tqdm: bool,
    /// Keep only each decoder layer's input and run the layer again in the backward: a fraction of the activation
    /// memory for about one more forward pass per step (`kit::model::checkpoint`). transformers default: false.
    pub gradient_checkpointing: bool,
    /// The frozen base's products in bf16 with f32 sums, as QLoRA computes and PyTorch's autocast does
    /// (`kit::bf16_gemm`: AVX-512 BF16 where the CPU has it, the same rounding through the f32 GEMM elsewhere), in
    /// training steps, evaluation and prefill; LoRA weights, their products and the optimizer stay f32. Off, every
    /// product is exact f32. transformers default: false.
    pub bf16: bool,
}

/// transformers' `max_steps = -1` means "no step limit, use `num_train_epochs`": kit's `None`. A config file may say
/// either.
fn minus_one_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None | Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as usize)),
        Some(n) => Err(D::Error::custom(format!(
            "expected a number of steps, or -1 for num_train_epochs; got {n}"
        ))),
    }
}

/// A boolean as Python's `string_to_bool` (transformers' `HfArgumentParser`) reads it: yes/true/t/y/1 and
/// no/false/f/n/0, in any case.
pub fn python_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "t" | "y" | "1" => Some(true),
        "no" | "false" | "f" | "n" | "0" => Some(false),
        _ => None,
    }
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
            gradient_checkpointing: false,
            bf16: false,
        }
    }
}

impl TrainingArguments {
    /// These arguments, or in the CI smoke mode a run of [`SMOKE`]'s steps of its batch size, with no accumulation
    /// (see [`crate::smoke`]). The trainer applies it; outside the smoke mode it changes nothing.
    pub fn smoke_capped(self) -> TrainingArguments {
        if !smoke_mode() {
            return self;
        }
        TrainingArguments {
            max_steps: Some(self.max_steps.map_or(SMOKE.max_steps, |n| n.min(SMOKE.max_steps))),
            per_device_train_batch_size: self.per_device_train_batch_size.min(SMOKE.train_batch),
            gradient_accumulation_steps: 1,
            ..self
        }
    }

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
        if self.lr_scheduler_type == SchedulerType::Polynomial && self.learning_rate <= POLYNOMIAL_LR_END {
            return bad(
                "learning_rate",
                "must be above 1e-7, where the polynomial schedule ends (as in transformers)",
            );
        }
        Ok(())
    }
}

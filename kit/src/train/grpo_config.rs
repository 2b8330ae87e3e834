//! GRPO's settings, named and defaulted as TRL's `GRPOConfig` (the method itself is in `grpo.rs`).
use crate::smoke::{smoke_mode, SMOKE};
use serde::{Deserialize, Serialize};

use super::TrainingArguments;

/// TRL's GRPO `loss_type` values that kit implements (TRL's spelling): how per-token losses are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrpoLossType {
    /// Mean over each completion's tokens, then over completions (the paper; favours short right answers).
    Grpo,
    /// Sum over the batch's tokens / their count (on one process, the same as dapo).
    Bnpo,
    /// Sum / (completions × max_completion_length) (Dr. GRPO).
    DrGrpo,
    /// Sum over the batch's tokens / their count (DAPO).
    #[default]
    Dapo,
}

impl GrpoLossType {
    /// Whether the loss divides by the completion tokens of the whole generation batch (TRL's
    /// `num_items_in_batch`), so that accumulated micro-batches add up to one batch; the others are means over
    /// each micro-batch, averaged over the micro-batches.
    pub fn normalises_over_step(self) -> bool {
        self == GrpoLossType::Dapo
    }
}

/// How rewards are scaled into advantages: by the group's std (the paper), the whole batch's, or not at all
/// (Dr. GRPO). Also read from TRL's older boolean form: true (or "true", "yes", "1", ...) is `group`, false `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the std of the prompt's group.
    #[default]
    Group,
    /// Divide by the std of the whole batch.
    Batch,
    /// No scaling, only the group mean subtracted.
    None,
}

impl<'de> Deserialize<'de> for ScaleRewards {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bool(bool),
            Name(String),
        }
        let name = match Form::deserialize(d)? {
            Form::Bool(b) => return Ok(if b { ScaleRewards::Group } else { ScaleRewards::None }),
            Form::Name(s) => s,
        };
        match (name.as_str(), super::args::python_bool(&name)) {
            ("group", _) | (_, Some(true)) => Ok(ScaleRewards::Group),
            ("batch", _) => Ok(ScaleRewards::Batch),
            ("none", _) | (_, Some(false)) => Ok(ScaleRewards::None),
            _ => Err(serde::de::Error::unknown_variant(
                &name,
                &["group", "batch", "none", "true", "false"],
            )),
        }
    }
}

/// The reference model of GRPO's KL term (kit's own; TRL with a PEFT model: base).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrpoReference {
    /// The base model: the adapter switched off.
    #[default]
    Base,
    /// The model as training starts, adapter included — e.g. after SFT in the same adapter: the KL then starts at
    /// 0 and `beta` holds the policy near the SFT model rather than pulling it back to the bare base.
    Initial,
}

/// TRL's `GRPOConfig`: the shared `TrainingArguments` (flattened: the same keys at the top level) and GRPO's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct GrpoConfig {
    /// The settings every trainer shares. `per_device_train_batch_size` counts completions, as in TRL: it must be a
    /// multiple of `num_generations`.
    #[serde(flatten)]
    pub args: TrainingArguments,
    /// Completions sampled per prompt (the group G); at least 2. TRL default: 8.
    pub num_generations: usize,
    /// Most tokens generated per completion. TRL default: 512.
    pub max_completion_length: usize,
    /// Sampling temperature; higher, more random completions. TRL default: 1.0.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this, in (0, 1]; 1 keeps all.
    /// TRL default: 1.0.
    pub top_p: f64,
    /// Keep only the k most likely tokens when sampling; 0 keeps all. TRL default: 0.
    pub top_k: usize,
    /// KL coefficient towards the reference (`reference`); 0 skips the reference pass. TRL default: 0.0.
    pub beta: f64,
    /// Which model the KL term compares with (kit's own; TRL with a PEFT model: base).
    pub reference: GrpoReference,
    /// Lower clip bound ε of the ratio, clip(ρ, 1 − ε, 1 + ε_high). TRL default: 0.2.
    pub epsilon: f64,
    /// Upper clip bound (DAPO's clip-higher, which suggests 0.28); unset: `epsilon`. TRL default: unset.
    pub epsilon_high: Option<f64>,
    /// Optimizer steps per generation round, reusing the same completions with π_old frozen at generation (μ).
    /// TRL default: 1.
    pub num_iterations: usize,
    /// How per-token losses are averaged. TRL default: dapo.
    pub loss_type: GrpoLossType,
    /// How rewards are scaled into advantages; TRL's older boolean form works too (true: group, false: none). TRL
    /// default: group.
    pub scale_rewards: ScaleRewards,
    /// Weights of the reward functions, one each, comma-separated on the command line; unset: all 1. TRL default:
    /// unset.
    pub reward_weights: Option<Vec<f64>>,
    /// Multiply the KL term by the importance ratio ρ: its gradient is then the unbiased reverse-KL gradient
    /// (DeepSeek-V3.2), and differs from the plain k3 gradient even on-policy where ρ = 1. TRL default (the version
    /// kit is checked against): true.
    pub use_bias_correction_kl: bool,
    /// Leave completions cut at `max_completion_length` out of the loss (DAPO). TRL default: false.
    pub mask_truncated_completions: bool,
    /// Wrap text prompts as a user turn with the model's chat template (kit's own; TRL decides by the data).
    pub chat: bool,
    /// Skip malformed rows (reporting how many) instead of stopping at the first (kit's own).
    pub skip_invalid_rows: bool,
    /// A KL budget: end the run (as a finished one: adapter saved) once the logged `kl`, the per-token KL to the
    /// reference, passes this many nats; it is measured only when `beta` > 0. Unset: no budget (kit's own).
    pub kl_budget: Option<f64>,
    /// Keep every sampled completion with its prompt, rewards and advantage, per step: in
    /// `output_dir/completions.jsonl` (started afresh by a new run; a resumed run keeps the finished steps' lines)
    /// and on the objective (`Grpo::completions`). TRL default: false.
    pub log_completions: bool,
}

impl GrpoConfig {
    /// This config, or in the CI smoke mode its cut-down form: one prompt per step with [`SMOKE`]'s completions,
    /// each at most [`SMOKE`]'s new tokens (see [`crate::smoke`]). `Grpo::new` applies it.
    pub fn smoke_capped(&self) -> GrpoConfig {
        if !smoke_mode() {
            return self.clone();
        }
        let mut cfg = self.clone();
        cfg.num_generations = self.num_generations.min(SMOKE.num_generations);
        cfg.max_completion_length = self.max_completion_length.min(SMOKE.max_new_tokens);
        cfg.args.per_device_train_batch_size = cfg.num_generations;
        cfg
    }
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            args: TrainingArguments {
                learning_rate: 1e-6,
                ..Default::default()
            },
            num_generations: 8,
            max_completion_length: 512,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            beta: 0.0,
            reference: GrpoReference::Base,
            epsilon: 0.2,
            epsilon_high: None,
            num_iterations: 1,
            loss_type: GrpoLossType::Dapo,
            scale_rewards: ScaleRewards::Group,
            reward_weights: None,
            use_bias_correction_kl: true,
            mask_truncated_completions: false,
            chat: false,
            skip_invalid_rows: false,
            kl_budget: None,
            log_completions: false,
        }
    }
}

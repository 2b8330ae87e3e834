//! `kit quickstart`: the README's main job, judged by its outcome on held-out data — the library's
//! [`kit::recipes::sft_then_dpo`] (SFT, then DPO from the SFT adapter, answers to held-out prompts before and after
//! each phase, the outcome table) with a progress bar and Ctrl-C.
use std::path::PathBuf;

use clap::Args;

use kit::recipes::{sft_then_dpo, RunTrainer, SftThenDpo, SftThenDpoReport};
use kit::train::{Objective, TrainOutput, Trainer};
use kit::Result;

#[derive(Args, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub struct QuickstartArgs {
    /// Model alias, local directory/.gguf, or hub id.
    #[arg(long, default_value_t = SftThenDpo::default().model_name_or_path)]
    pub model_name_or_path: String,
    /// The folder holding sft_ja/ and pref_ja/.
    #[arg(long, default_value_os_t = SftThenDpo::default().datasets)]
    pub datasets: PathBuf,
    /// Where sft/, dpo/ and answers.md go.
    #[arg(long, default_value_os_t = SftThenDpo::default().output_dir)]
    pub output_dir: PathBuf,
    /// Optimizer steps of the SFT phase.
    #[arg(long, default_value_t = SftThenDpo::default().sft_steps)]
    pub sft_steps: usize,
    /// Peak learning rate of the SFT phase.
    #[arg(long, default_value_t = SftThenDpo::default().sft_learning_rate)]
    pub sft_learning_rate: f64,
    /// Optimizer steps of the DPO phase.
    #[arg(long, default_value_t = SftThenDpo::default().dpo_steps)]
    pub dpo_steps: usize,
    /// Peak learning rate of the DPO phase.
    #[arg(long, default_value_t = SftThenDpo::default().dpo_learning_rate)]
    pub dpo_learning_rate: f64,
    /// DPO's β: how far the policy may move from the reference (higher = closer).
    #[arg(long, default_value_t = SftThenDpo::default().beta)]
    pub beta: f64,
    /// Examples (SFT) or pairs (DPO) per optimizer step.
    #[arg(long, default_value_t = SftThenDpo::default().per_device_train_batch_size)]
    pub per_device_train_batch_size: usize,
    /// LoRA rank (alpha = 2 × rank).
    #[arg(long, default_value_t = SftThenDpo::default().lora_r)]
    pub lora_r: usize,
    /// Longest answer generated for each held-out prompt.
    #[arg(long, default_value_t = SftThenDpo::default().max_new_tokens)]
    pub max_new_tokens: usize,
    /// Held-out prompts answered before and after training (0 = all of pref_ja/dev).
    #[arg(long, default_value_t = SftThenDpo::default().num_prompts)]
    pub num_prompts: usize,
    /// Also train SFT on the preferred answers of pref_ja/train (as one-turn conversations), as the DPO paper builds
    /// π_SFT when no SFT model exists (Rafailov et al. 2023, §4): the cold start then sees the kind of questions DPO
    /// and the held-out prompts ask.
    #[arg(long, default_value_t = SftThenDpo::default().sft_on_chosen, action = clap::ArgAction::Set)]
    pub sft_on_chosen: bool,
    /// Seed of the LoRA initialisation, data order and dropout.
    #[arg(long, default_value_t = SftThenDpo::default().seed)]
    pub seed: u64,
}

impl From<QuickstartArgs> for SftThenDpo {
    fn from(a: QuickstartArgs) -> Self {
        SftThenDpo {
            model_name_or_path: a.model_name_or_path,
            datasets: a.datasets,
            output_dir: a.output_dir,
            sft_steps: a.sft_steps,
            sft_learning_rate: a.sft_learning_rate,
            dpo_steps: a.dpo_steps,
            dpo_learning_rate: a.dpo_learning_rate,
            beta: a.beta,
            per_device_train_batch_size: a.per_device_train_batch_size,
            lora_r: a.lora_r,
            max_new_tokens: a.max_new_tokens,
            num_prompts: a.num_prompts,
            sft_on_chosen: a.sft_on_chosen,
            seed: a.seed,
        }
    }
}

/// Each phase with the command line's progress bar and Ctrl-C (a checkpoint, then the recipe ends).
struct CliRun;

impl RunTrainer for CliRun {
    fn run<O: Objective>(&mut self, trainer: &mut Trainer<'_, O>) -> Result<TrainOutput> {
        crate::train::run_trainer(trainer)
    }
}

pub fn run(a: QuickstartArgs) -> Result<SftThenDpoReport> {
    sft_then_dpo(&a.into(), &mut CliRun)
}

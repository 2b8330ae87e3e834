//! kit: post-train small LLMs in Rust — QLoRA, SFT, DPO, GRPO and reward models, with a course attached.
//!
//! Data flows one way: source → model → (adapter) → batch → loss → step → metrics.
//! Generation is the same model run with a KV cache.
//!
//! ```no_run
//! use kit::prelude::*;
//! let model = Model::load("smollm2-135m", &LoadOptions::default())?;
//! let out = model.generate(&["What is the capital of France?"], &GenerationConfig::greedy(32))?;
//! println!("{}", out[0].text);
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod autograd;
pub mod bf16_gemm;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod generate;
pub mod hub;
pub mod io;
pub mod lm_head;
pub mod logps;
pub mod lora;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod notebook;
pub mod plot;
pub mod qgemv;
pub mod quant;
pub mod recipes;
pub mod rewards;
pub mod sampling;
pub mod score;
pub mod smoke;
pub mod system;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};

/// kit's version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a notebook or example needs: `use kit::prelude::*;`.
pub mod prelude {
    pub use crate::data::keywords::{keyword_summary_prompts, keywords_present};
    pub use crate::data::math_ja::extract_answer;
    pub use crate::data::worked::{worked_solution, worked_solution_rows};
    pub use crate::data::{
        load_preference, load_prompts, load_sft, preview_preference, preview_sft, read_column, stratified_take,
        swap_labels, write_jsonl, DatasetFiles, Origin, PairPreview, Preview, PromptRow, SftPreview, SftRow, Turns,
    };
    pub use crate::device::{pick_device, DeviceChoice, PickedDevice};
    pub use crate::eval::{accuracy_by_group, chrf, wilson_interval, GroupAccuracy};
    pub use crate::eval::{answer_held_out, Answers, HeldOut};
    pub use crate::eval::{hack_signs, paired_difference, solve_math, HackSigns, MeanDifference, SolveConfig, Solved};
    pub use crate::generate::{FinishReason, Generation, GenerationConfig};
    pub use crate::lora::{merge as merge_adapter, Adapter, LoraConfig, TargetModules};
    pub use crate::memory::{MemoryPlan, ModelShape};
    pub use crate::model::{LoadOptions, Model, ModelConfig};
    pub use crate::notebook::{accuracy_table, Chart, Table};
    pub use crate::rewards::{
        exact_answer_reward, format_reward, japanese_ratio_reward, keyword_gold_reward, keyword_reward, length_reward,
        reward_fn, RewardFunction, RewardInput,
    };
    pub use crate::sampling::SamplingParams;
    pub use crate::score::TokenLogProb;
    pub use crate::smoke::{smoke_mode, smoke_take};
    pub use crate::system::{current_memory_gib, peak_memory_gib, Machine};
    pub use crate::tokenizer::{Message, Tokenizer};
    pub use crate::train::dpo::{
        dpo_trainer_from_rows, reference_scored, train_dpo, Dpo, DpoConfig, DpoLossType, DpoReference,
    };
    pub use crate::train::grpo::{
        grpo_trainer_from_rows, train_grpo, GrpoConfig, GrpoLossType, GrpoReference, ScaleRewards,
    };
    pub use crate::train::reward_model::{reward_trainer_from_rows, train_reward, RewardConfig, RewardModel};
    pub use crate::train::sft::{sft_trainer_from_rows, train_sft, SftConfig};
    pub use crate::train::{
        EarlyStopping, Metrics, ObjectiveConfig, OnEvaluate, OnLog, StopWhen, TrainOutput, Trainer, TrainerCallback,
        TrainerControl, TrainerState, TrainingArguments,
    };
    pub use candle_core::{DType, Device, Tensor};
}

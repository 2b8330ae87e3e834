//! `kit sft|dpo|grpo|reward`: flags named like TRL's, an optional JSON config file (`--config`), and the same
//! library calls a notebook makes.
//!
//! Precedence: the trainer's defaults (TRL's), then the config file, then flags given on the command line. A key the
//! trainer does not know is an error naming it, so a typo never silently falls back to a default.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::data::TruncationMode;
use crate::lora::{LoraConfig, TargetModules};
use crate::model::{LoadOptions, Model};
use crate::train::dpo::{DpoConfig, DpoLossType};
use crate::train::grpo::{GrpoConfig, GrpoLossType, ScaleRewards};
use crate::train::optim::SchedulerType;
use crate::train::reward_model::RewardConfig;
use crate::train::sft::SftConfig;
use crate::train::TrainOutput;
use crate::{Error, Result};

/// Flags every trainer takes. Unset flags leave the config file's (or the default) value alone.
#[derive(Args, Debug, Clone, Serialize, Default)]
#[command(rename_all = "snake_case")]
pub struct CommonArgs {
    /// Model alias (gemma3-270m, smollm2-135m), local directory/.gguf, or hub id.
    #[arg(long, default_value = "gemma3-270m")]
    #[serde(skip)]
    pub model_name_or_path: String,
    /// Training data: a .jsonl/.json file, or a dataset folder holding train.jsonl (and dev.jsonl for evaluation).
    #[arg(long)]
    #[serde(skip)]
    pub dataset: PathBuf,
    /// Held-out data (default: dev.jsonl next to the training file, when there is one).
    #[arg(long)]
    #[serde(skip)]
    pub eval_dataset: Option<PathBuf>,
    /// A JSON file of trainer settings (the same keys as the flags).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Dequantize GGUF weights to f32 at load (exact, more memory).
    #[arg(long)]
    #[serde(skip)]
    pub dequantize: bool,
    /// Quantize a dense model's projections to 4 bits at load (QLoRA).
    #[arg(long)]
    #[serde(skip)]
    pub load_in_4bit: bool,

    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_scheduler_type: Option<SchedulerType>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_ratio: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_device_train_batch_size: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_device_eval_batch_size: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gradient_accumulation_steps: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_train_epochs: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging_steps: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_steps: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub eval_on_start: bool,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_steps: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_total_limit: Option<usize>,
    /// A checkpoint folder, or "latest" for the newest in output_dir.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_from_checkpoint: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skip_invalid_rows: bool,
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable_tqdm: bool,

    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    #[serde(skip)]
    pub lora_r: usize,
    #[arg(long, default_value_t = 32.0)]
    #[serde(skip)]
    pub lora_alpha: f64,
    #[arg(long, default_value_t = 0.0)]
    #[serde(skip)]
    pub lora_dropout: f32,
    /// Projections to adapt: "all-linear" or names (q_proj,v_proj,...).
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    #[serde(skip)]
    pub lora_target_modules: Vec<String>,
    #[arg(long)]
    #[serde(skip)]
    pub use_rslora: bool,
}

#[derive(Args, Debug, Clone, Serialize)]
#[command(rename_all = "snake_case")]
pub struct SftArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    /// Loss on completion/assistant tokens only (true by default).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_only_loss: Option<bool>,
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncation_mode: Option<TruncationMode>,
}

#[derive(Args, Debug, Clone, Serialize)]
#[command(rename_all = "snake_case")]
pub struct DpoArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_type: Option<DpoLossType>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub precompute_ref_log_probs: bool,
}

#[derive(Args, Debug, Clone, Serialize)]
#[command(rename_all = "snake_case")]
pub struct GrpoArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    /// Reward functions: built-in names (format, accuracy, length[:N], japanese_ratio), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "format,accuracy")]
    #[serde(skip)]
    pub reward_funcs: Vec<String>,
    /// A trained reward model folder (from `kit reward`) to use as one more reward function.
    #[arg(long)]
    #[serde(skip)]
    pub reward_model: Option<PathBuf>,
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward_weights: Option<Vec<f64>>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_generations: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_length: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon_high: Option<f64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_iterations: Option<usize>,
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_type: Option<GrpoLossType>,
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_rewards: Option<ScaleRewards>,
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mask_truncated_completions: bool,
    /// Wrap text prompts as a user turn with the chat template.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub chat: bool,
}

#[derive(Args, Debug, Clone, Serialize)]
#[command(rename_all = "snake_case")]
pub struct RewardArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub center_rewards_coefficient: Option<f64>,
}

/// Keys of a config struct, as its defaults serialise (flattened `args` included).
fn known_keys<C: Serialize + Default>() -> Result<Vec<String>> {
    match serde_json::to_value(C::default())? {
        Value::Object(m) => Ok(m.keys().cloned().collect()),
        _ => Err(Error::msg("a trainer config must serialise to an object")),
    }
}

/// defaults ← config file ← flags, refusing unknown keys.
pub fn build_config<C: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    flags: &impl Serialize,
) -> Result<C> {
    let known = known_keys::<C>()?;
    let mut merged = match serde_json::to_value(C::default())? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        let Value::Object(m) = v else {
            return Err(Error::file(path, "a config file must be a JSON object"));
        };
        for (k, v) in m {
            if !known.contains(&k) {
                return Err(Error::field(
                    path,
                    &k,
                    format!("unknown setting (known: {})", known.join(", ")),
                ));
            }
            merged.insert(k, v);
        }
    }
    if let Value::Object(m) = serde_json::to_value(flags)? {
        for (k, v) in m {
            if known.contains(&k) {
                merged.insert(k, v);
            }
        }
    }
    serde_json::from_value(Value::Object(merged)).map_err(|e| Error::Input(format!("trainer settings: {e}")))
}

/// `dir/<stem>.jsonl`, else `dir/<stem>.json` when only that exists.
fn split_file(dir: &Path, stem: &str) -> PathBuf {
    let jsonl = dir.join(format!("{stem}.jsonl"));
    let json = dir.join(format!("{stem}.json"));
    if !jsonl.exists() && json.exists() {
        json
    } else {
        jsonl
    }
}

/// (train file, eval file): a folder means its train.jsonl and dev.jsonl (or .json); a file's eval split is a
/// sibling dev.jsonl (or dev.json).
pub fn dataset_files(common: &CommonArgs) -> Result<(PathBuf, Option<PathBuf>)> {
    let d = &common.dataset;
    let train = if d.is_dir() { split_file(d, "train") } else { d.clone() };
    if !train.exists() {
        return Err(Error::file(&train, "training data not found"));
    }
    let eval = match &common.eval_dataset {
        Some(p) => Some(p.clone()),
        None => train
            .parent()
            .map(|dir| split_file(dir, "dev"))
            .filter(|p| p.exists() && *p != train),
    };
    Ok((train, eval))
}

fn load_model(common: &CommonArgs) -> Result<Model> {
    let opts = LoadOptions {
        dequantize: common.dequantize,
        load_in_4bit: common.load_in_4bit,
        ..Default::default()
    };
    eprintln!("loading {} ...", common.model_name_or_path);
    Model::load(&common.model_name_or_path, &opts)
}

pub fn lora_config(common: &CommonArgs, seed: u64) -> LoraConfig {
    let targets = if common.lora_target_modules.len() == 1 && common.lora_target_modules[0] == "all-linear" {
        TargetModules::Preset("all-linear".into())
    } else {
        TargetModules::List(common.lora_target_modules.clone())
    };
    LoraConfig {
        r: common.lora_r,
        lora_alpha: common.lora_alpha,
        lora_dropout: common.lora_dropout,
        target_modules: targets,
        use_rslora: common.use_rslora,
        init_seed: seed,
        ..Default::default()
    }
}

/// Stop flag set by Ctrl-C: the trainer finishes the step, writes a checkpoint and returns. One flag per process
/// (a process can install only one handler), shared by every run in it.
pub(crate) fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            eprintln!("\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to abort)");
            if f.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
        flag
    })
    .clone()
}

fn report(out: &TrainOutput, output_dir: &Path) {
    let last = out.log_history.iter().rev().find(|m| m.contains_key("loss"));
    println!(
        "{} after {} steps: mean training loss {:.4}{}",
        if out.interrupted { "stopped" } else { "done" },
        out.global_step,
        out.training_loss,
        last.map(|m| format!(", last logged loss {:.4}", m["loss"]))
            .unwrap_or_default()
    );
    if let Some(e) = out.log_history.iter().rev().find(|m| m.contains_key("eval_loss")) {
        let items: Vec<String> = e
            .iter()
            .filter(|(k, _)| k.starts_with("eval_"))
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        println!("held out: {}", items.join("  "));
    }
    println!(
        "adapter: {}\nmetrics: {}",
        out.adapter_dir.display(),
        output_dir.join("metrics.jsonl").display()
    );
}

macro_rules! run_trainer {
    ($args:expr, $cfg_ty:ty, $default_out:expr, |$model:ident, $adapter:ident, $train:ident, $eval:ident, $cfg:ident| $body:expr) => {{
        let a = $args;
        let mut $cfg: $cfg_ty = build_config(a.common.config.as_deref(), &a)?;
        if a.common.output_dir.is_none() && !a.common.config.is_some() {
            $cfg.args.output_dir = PathBuf::from($default_out);
        }
        let (train_path, eval_path) = dataset_files(&a.common)?;
        let mut $model = load_model(&a.common)?;
        let lora_cfg = lora_config(&a.common, $cfg.args.seed);
        let $adapter = $model.attach_lora(&lora_cfg)?;
        eprintln!("{}", $adapter.summary(&$model.decoder));
        let ($train, $eval) = (train_path.as_path(), eval_path.as_deref());
        let out: TrainOutput = $body?;
        report(&out, &$cfg.args.output_dir);
        Ok(out)
    }};
}

pub fn sft(a: SftArgs) -> Result<TrainOutput> {
    run_trainer!(a, SftConfig, "outputs/sft", |model, adapter, train, eval, cfg| {
        crate::train::sft::sft_trainer(&model, &adapter, train, eval, &cfg).and_then(|mut t| {
            t.stop = interrupt_flag();
            t.train()
        })
    })
}

pub fn dpo(a: DpoArgs) -> Result<TrainOutput> {
    run_trainer!(a, DpoConfig, "outputs/dpo", |model, adapter, train, eval, cfg| {
        crate::train::dpo::dpo_trainer(&model, &adapter, train, eval, &cfg).and_then(|mut t| {
            t.stop = interrupt_flag();
            t.train()
        })
    })
}

pub fn reward(a: RewardArgs) -> Result<TrainOutput> {
    run_trainer!(a, RewardConfig, "outputs/reward", |model, adapter, train, eval, cfg| {
        crate::train::reward_model::reward_trainer(&model, &adapter, train, eval, &cfg).and_then(|mut t| {
            t.stop = interrupt_flag();
            t.train()
        })
    })
}

pub fn grpo(a: GrpoArgs) -> Result<TrainOutput> {
    let mut funcs = a
        .reward_funcs
        .iter()
        .filter(|s| !s.is_empty())
        .map(|n| crate::rewards::builtin(n))
        .collect::<Result<Vec<_>>>()?;
    if let Some(dir) = &a.reward_model {
        let base = std::fs::read_to_string(dir.join("adapter_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["base_model_name_or_path"].as_str().map(String::from))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| a.common.model_name_or_path.clone());
        funcs.push(Box::new(crate::train::reward_model::RewardModel::load(
            &base,
            dir,
            &LoadOptions::default(),
        )?));
    }
    run_trainer!(a, GrpoConfig, "outputs/grpo", |model, adapter, train, eval, cfg| {
        crate::train::grpo::grpo_trainer(&model, &adapter, train, eval, funcs, &cfg).and_then(|mut t| {
            t.stop = interrupt_flag();
            t.train()
        })
    })
}

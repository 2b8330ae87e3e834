//! `kit sft|dpo|grpo|reward`: the trainer settings as TRL's flags (made from the config structs, see `settings`), an
//! optional JSON config file (`--config`), model/data/LoRA flags, and the same library calls a notebook makes.
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{ArgMatches, Args, Command, FromArgMatches};
use serde_json::{Map, Value};

use kit::lora::{LoraConfig, TargetModules};
use kit::metrics::keys;
use kit::model::{LoadOptions, Model};
use kit::train::dpo::DpoConfig;
use kit::train::grpo::GrpoConfig;
use kit::train::reward_model::RewardConfig;
use kit::train::sft::SftConfig;
use kit::train::{TrainOutput, Trainer};
use kit::Result;

use crate::config::build_config;
use crate::flags;
use crate::settings::{settings, TrainerConfig};

/// Flags that are not trainer settings: what to train, on what, and the adapter. Names and defaults are TRL's
/// (`ModelConfig`, `ScriptArguments`).
#[derive(Args, Debug, Clone)]
#[command(rename_all = "snake_case", next_help_heading = "Model, data and LoRA")]
pub struct CommonArgs {
    /// Model alias (gemma3-270m, smollm2-135m), local directory/.gguf, or hub id.
    #[arg(long, default_value = "gemma3-270m")]
    pub model_name_or_path: String,
    /// Training data: a .jsonl/.json file, or a dataset folder holding train.jsonl (and dev.jsonl for evaluation).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Held-out data (default: the dataset folder's dev.jsonl, when there is one).
    #[arg(long)]
    pub eval_dataset: Option<PathBuf>,
    /// A JSON file of trainer settings, under the flags' names (e.g. {"learning_rate": 5e-4, "max_steps": 60});
    /// flags given on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dequantize GGUF weights to f32 at load (exact, more memory).
    #[arg(long)]
    pub dequantize: bool,
    /// Quantize a dense model's projections to 4 bits at load (QLoRA).
    #[arg(long)]
    pub load_in_4bit: bool,
    /// LoRA rank r.
    #[arg(long, default_value_t = 16)]
    pub lora_r: usize,
    /// LoRA scale α (the update is scaled by α/r).
    #[arg(long, default_value_t = 32.0)]
    pub lora_alpha: f64,
    /// Dropout on the LoRA input while training.
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f32,
    /// Projections to adapt: "all-linear" or names (q_proj,v_proj,...).
    #[arg(long, value_delimiter = ',', default_value = "all-linear")]
    pub lora_target_modules: Vec<String>,
    /// Rank-stabilised LoRA: scale by α/√r.
    #[arg(long)]
    pub use_rslora: bool,
}

/// No flags beyond the common ones.
#[derive(Args, Debug, Clone, Default)]
pub struct NoExtra {}

/// GRPO's reward functions (Python callables in TRL; names of built-in ones here).
#[derive(Args, Debug, Clone)]
#[command(rename_all = "snake_case", next_help_heading = "Rewards")]
pub struct GrpoExtra {
    /// Reward functions: built-in names (format, accuracy, `length[:N]`, japanese_ratio), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "format,accuracy")]
    pub reward_funcs: Vec<String>,
    /// A trained reward model folder (from `kit reward`) to use as one more reward function.
    #[arg(long)]
    pub reward_model: Option<PathBuf>,
}

/// A trainer subcommand's arguments: the common flags, the trainer's extra ones, and the trainer settings given on
/// the command line (JSON values by setting name; `build_config` layers them over the defaults and `--config`).
#[derive(Debug, Clone)]
pub struct TrainArgs<C, X = NoExtra> {
    pub common: CommonArgs,
    pub extra: X,
    pub settings: Map<String, Value>,
    config: PhantomData<C>,
}

pub type SftArgs = TrainArgs<SftConfig>;
pub type DpoArgs = TrainArgs<DpoConfig>;
pub type GrpoArgs = TrainArgs<GrpoConfig, GrpoExtra>;
pub type RewardArgs = TrainArgs<RewardConfig>;

impl<C: TrainerConfig, X: Args + FromArgMatches> TrainArgs<C, X> {
    /// defaults ← `--config` file ← flags.
    pub fn config(&self) -> Result<C> {
        build_config(self.common.config.as_deref(), &self.settings)
    }
}

impl<C: TrainerConfig, X: Args + FromArgMatches> FromArgMatches for TrainArgs<C, X> {
    fn from_arg_matches(m: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        Ok(TrainArgs {
            common: CommonArgs::from_arg_matches(m)?,
            extra: X::from_arg_matches(m)?,
            settings: flags::collect(m, &settings::<C>())?,
            config: PhantomData,
        })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl<C: TrainerConfig, X: Args + FromArgMatches> Args for TrainArgs<C, X> {
    fn augment_args(cmd: Command) -> Command {
        let cmd = X::augment_args(CommonArgs::augment_args(cmd));
        let heading = format!("{} settings (TRL's {})", C::NAME.to_uppercase(), C::TRL_NAME);
        flags::augment(cmd, &settings::<C>(), &heading)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The training and evaluation files the flags name, by the library's one rule ([`kit::data::DatasetFiles`]): a
/// dataset folder means its `train.jsonl`, and its `dev.jsonl` for evaluation unless `--eval_dataset` is given.
pub fn dataset_files(common: &CommonArgs) -> Result<(PathBuf, Option<PathBuf>)> {
    let files = kit::data::DatasetFiles::resolve(&common.dataset, common.eval_dataset.as_deref())?;
    Ok((files.train, files.eval))
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

/// The adapter the flags ask for; A is initialised from the run's `seed`.
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

/// Run a trainer as the command line does: Ctrl-C finishes the step and saves a checkpoint, and a terminal shows a
/// progress bar instead of plain lines (unless `disable_tqdm`).
pub fn run_trainer<O: kit::train::Objective>(trainer: &mut kit::train::Trainer<'_, O>) -> Result<TrainOutput> {
    trainer.stop = interrupt_flag();
    if !trainer.args.disable_tqdm {
        if let Some(bar) = crate::progress::TerminalProgress::if_terminal() {
            trainer.replace_progress(bar);
        }
    }
    trainer.train()
}

/// Stop flag set by Ctrl-C: the trainer finishes the step, writes a checkpoint and returns. One flag per process
/// (a process can install only one handler), shared by every run in it.
pub fn interrupt_flag() -> Arc<AtomicBool> {
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
    let last = out.log_history.iter().rev().find(|m| m.contains_key(keys::LOSS));
    println!(
        "{} after {} steps: mean training loss {:.4}{}",
        if out.interrupted { "stopped" } else { "done" },
        out.global_step,
        out.training_loss,
        last.map(|m| format!(", last logged loss {:.4}", m[keys::LOSS]))
            .unwrap_or_default()
    );
    if let Some(e) = out.log_history.iter().rev().find(|m| m.contains_key(keys::EVAL_LOSS)) {
        let items: Vec<String> = e
            .iter()
            .filter(|(k, _)| keys::is_eval(k))
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

macro_rules! train_with {
    ($args:expr, |$model:ident, $adapter:ident, $train:ident, $eval:ident, $cfg:ident| $body:expr) => {{
        let a = $args;
        let $cfg = a.config()?;
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
    train_with!(a, |model, adapter, train, eval, cfg| {
        Trainer::from_files(&model, &adapter, cfg.clone(), train, eval).and_then(|mut t| run_trainer(&mut t))
    })
}

pub fn dpo(a: DpoArgs) -> Result<TrainOutput> {
    train_with!(a, |model, adapter, train, eval, cfg| {
        Trainer::from_files(&model, &adapter, cfg.clone(), train, eval).and_then(|mut t| run_trainer(&mut t))
    })
}

pub fn reward(a: RewardArgs) -> Result<TrainOutput> {
    train_with!(a, |model, adapter, train, eval, cfg| {
        Trainer::from_files(&model, &adapter, cfg.clone(), train, eval).and_then(|mut t| run_trainer(&mut t))
    })
}

pub fn grpo(a: GrpoArgs) -> Result<TrainOutput> {
    let mut funcs = a
        .extra
        .reward_funcs
        .iter()
        .filter(|s| !s.is_empty())
        .map(|n| kit::rewards::builtin(n))
        .collect::<Result<Vec<_>>>()?;
    if let Some(dir) = &a.extra.reward_model {
        let base = std::fs::read_to_string(dir.join("adapter_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["base_model_name_or_path"].as_str().map(String::from))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| a.common.model_name_or_path.clone());
        funcs.push(Box::new(kit::train::reward_model::RewardModel::load(
            &base,
            dir,
            &LoadOptions::default(),
        )?));
    }
    train_with!(a, |model, adapter, train, eval, cfg| {
        let setup = cfg.clone().with_rewards(funcs);
        Trainer::from_files(&model, &adapter, setup, train, eval).and_then(|mut t| run_trainer(&mut t))
    })
}

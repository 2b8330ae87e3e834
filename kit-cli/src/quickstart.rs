//! `kit quickstart`: the README's main job. On the default model and the shipped Japanese data: answers before
//! training, SFT (cold start on `sft_ja`), DPO (on `pref_ja`, reference = the SFT model), answers after; adapter,
//! metrics and plots in the output folder. A few minutes on a laptop CPU.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use kit::data::{load_preference, load_sft, SftRow, Turns};
use kit::generate::GenerationConfig;
use kit::lora::LoraConfig;
use kit::model::{LoadOptions, Model};
use kit::train::dpo::{Dpo, DpoConfig, DpoReference};
use kit::train::sft::{Sft, SftConfig};
use kit::train::{Objective, TrainOutput, Trainer, TrainingArguments};
use kit::{Error, Result};

/// Held-out rows evaluated during the quickstart (kept small: evaluation is forward passes on a CPU).
const EVAL_ROWS: usize = 12;

#[derive(Args, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub struct QuickstartArgs {
    /// Model alias, local directory/.gguf, or hub id.
    #[arg(long, default_value = "gemma3-270m")]
    pub model_name_or_path: String,
    /// The folder holding sft_ja/ and pref_ja/.
    #[arg(long, default_value = "datasets")]
    pub datasets: PathBuf,
    /// Where sft/, dpo/ and answers.md go.
    #[arg(long, default_value = "outputs/quickstart")]
    pub output_dir: PathBuf,
    /// Optimizer steps of the SFT phase.
    #[arg(long, default_value_t = 20)]
    pub sft_steps: usize,
    /// Optimizer steps of the DPO phase.
    #[arg(long, default_value_t = 20)]
    pub dpo_steps: usize,
    /// Held-out prompts answered before and after training.
    #[arg(long, default_value_t = 3)]
    pub num_prompts: usize,
    /// Seed of the LoRA initialisation, data order and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What the quickstart did.
pub struct QuickstartReport {
    pub prompts: Vec<String>,
    pub before: Vec<String>,
    pub after_sft: Vec<String>,
    pub after_dpo: Vec<String>,
    pub sft: TrainOutput,
    pub dpo: TrainOutput,
}

/// Greedy answers (with a repetition penalty: small models otherwise loop, which hides what training changed).
fn answers(model: &Model, prompts: &[String]) -> Result<Vec<String>> {
    let mut cfg = GenerationConfig::greedy(64).with_chat(true);
    cfg.sampling.repetition_penalty = 1.3;
    Ok(model
        .generate(prompts, &cfg)?
        .into_iter()
        .map(|g| g.text.trim().to_string())
        .collect())
}

fn first_user_turns(path: &Path, n: usize) -> Result<Vec<String>> {
    let rows = load_sft(path, false)?.rows;
    Ok(rows
        .iter()
        .filter_map(|(_, r)| match r {
            SftRow::LanguageModeling(Turns::Chat(m)) => m.iter().find(|m| m.role == "user").map(|m| m.content.clone()),
            SftRow::PromptCompletion {
                prompt: Turns::Chat(m), ..
            } => m.iter().find(|m| m.role == "user").map(|m| m.content.clone()),
            _ => None,
        })
        .take(n)
        .collect())
}

pub fn run(a: QuickstartArgs) -> Result<QuickstartReport> {
    let sft_dir = a.datasets.join("sft_ja");
    let pref_dir = a.datasets.join("pref_ja");
    for d in [&sft_dir, &pref_dir] {
        if !d.join("train.jsonl").exists() {
            return Err(Error::file(
                d,
                "missing train.jsonl (run from the repository root, or pass --datasets)",
            ));
        }
    }
    std::fs::create_dir_all(&a.output_dir).map_err(|e| Error::file(&a.output_dir, e))?;
    println!("== loading {}", a.model_name_or_path);
    let mut model = Model::load(&a.model_name_or_path, &LoadOptions::default())?;
    let adapter = model.attach_lora(&LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        init_seed: a.seed,
        ..Default::default()
    })?;
    println!("{}", adapter.summary(&model.decoder));
    let prompts = first_user_turns(&sft_dir.join("test.jsonl"), a.num_prompts)?;
    println!("== answers before training");
    let before = answers(&model, &prompts)?;
    print_answers(&prompts, &before);

    let common = |steps: usize, lr: f64, sub: &str| TrainingArguments {
        output_dir: a.output_dir.join(sub),
        learning_rate: lr,
        per_device_train_batch_size: 2,
        per_device_eval_batch_size: 8,
        max_steps: Some(steps),
        warmup_ratio: 0.1,
        logging_steps: 5,
        eval_steps: Some(steps.div_ceil(2).max(1)),
        eval_on_start: true,
        seed: a.seed,
        ..Default::default()
    };
    println!("== SFT on {} ({} steps)", sft_dir.display(), a.sft_steps);
    let sft_cfg = SftConfig {
        args: common(a.sft_steps, 2e-4, "sft"),
        max_length: Some(192),
        ..Default::default()
    };
    let sft_train = load_sft(sft_dir.join("train.jsonl"), false)?.rows;
    let sft_eval = load_sft(sft_dir.join("dev.jsonl"), false)?.rows;
    let sft_train = kit::train::sft::prepare(&model, &sft_train, &sft_cfg)?;
    let sft_eval = kit::train::sft::prepare(&model, &sft_eval[..sft_eval.len().min(EVAL_ROWS)], &sft_cfg)?;
    let sft = train_or_stop(
        Trainer::new(&model, &adapter, Sft::new(&model), sft_cfg.args.clone()).with_data(sft_train, sft_eval),
        "SFT",
    )?;
    let after_sft = answers(&model, &prompts)?;
    println!("== answers after SFT");
    print_answers(&prompts, &after_sft);

    println!(
        "== DPO on {} ({} steps, reference = the SFT model)",
        pref_dir.display(),
        a.dpo_steps
    );
    let dpo_cfg = DpoConfig {
        args: common(a.dpo_steps, 5e-4, "dpo"),
        beta: 0.1,
        max_length: Some(192),
        reference: DpoReference::Initial,
        ..Default::default()
    };
    // The reference (the SFT model) is scored once up front, so only the pairs this short run will see are used.
    let per_run = a.dpo_steps * dpo_cfg.args.per_device_train_batch_size;
    let pref_train = load_preference(pref_dir.join("train.jsonl"), false)?.rows;
    let pref_eval = load_preference(pref_dir.join("dev.jsonl"), false)?.rows;
    let mut pref_train = kit::train::dpo::prepare(&model, &pref_train[..pref_train.len().min(per_run)], &dpo_cfg)?;
    let mut pref_eval = kit::train::dpo::prepare(&model, &pref_eval[..pref_eval.len().min(EVAL_ROWS)], &dpo_cfg)?;
    let objective = Dpo::new(&model, dpo_cfg.clone());
    objective.precompute(&model, &adapter, &mut pref_train, 8)?;
    objective.precompute(&model, &adapter, &mut pref_eval, 8)?;
    let dpo = train_or_stop(
        Trainer::new(&model, &adapter, objective, dpo_cfg.args.clone()).with_data(pref_train, pref_eval),
        "DPO",
    )?;
    let after_dpo = answers(&model, &prompts)?;
    println!("== answers after DPO");
    print_answers(&prompts, &after_dpo);

    let report = QuickstartReport {
        prompts,
        before,
        after_sft,
        after_dpo,
        sft,
        dpo,
    };
    let md = summary_markdown(&report);
    kit::io::write_atomic(a.output_dir.join("answers.md"), md.as_bytes())?;
    println!(
        "== written to {}: sft/ and dpo/ (adapter, metrics.jsonl, *.svg plots), answers.md",
        a.output_dir.display()
    );
    Ok(report)
}

/// Train with Ctrl-C handling: an interrupted phase saves its checkpoint and ends the quickstart.
fn train_or_stop<O: Objective>(trainer: Trainer<'_, O>, phase: &str) -> Result<TrainOutput> {
    let output_dir = trainer.args.output_dir.clone();
    let out = crate::train::run_trainer(trainer)?;
    if out.interrupted {
        return Err(Error::msg(format!(
            "interrupted during {phase}; its checkpoint is in {}",
            output_dir.display()
        )));
    }
    Ok(out)
}

fn print_answers(prompts: &[String], answers: &[String]) {
    for (p, a) in prompts.iter().zip(answers) {
        println!("Q: {p}\nA: {}\n", a.replace('\n', " "));
    }
}

fn last(out: &TrainOutput, key: &str) -> String {
    out.log_history
        .iter()
        .rev()
        .find_map(|m| m.get(key))
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "-".into())
}

fn first(out: &TrainOutput, key: &str) -> String {
    out.log_history
        .iter()
        .find_map(|m| m.get(key))
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "-".into())
}

/// The run as Markdown: metrics first/last, then each prompt's three answers.
pub fn summary_markdown(r: &QuickstartReport) -> String {
    let mut s = String::from("# kit quickstart\n\n| metric | first log | last log |\n|---|---|---|\n");
    for (name, out, key) in [
        ("SFT loss", &r.sft, "loss"),
        ("SFT eval_loss", &r.sft, "eval_loss"),
        ("DPO loss", &r.dpo, "loss"),
        ("DPO rewards/accuracies", &r.dpo, "rewards/accuracies"),
        ("DPO eval_rewards/accuracies", &r.dpo, "eval_rewards/accuracies"),
        ("DPO rewards/margins", &r.dpo, "rewards/margins"),
    ] {
        let _ = writeln!(s, "| {name} | {} | {} |", first(out, key), last(out, key));
    }
    for (i, p) in r.prompts.iter().enumerate() {
        let _ = write!(
            s,
            "\n## {p}\n\n- before: {}\n- after SFT: {}\n- after DPO: {}\n",
            r.before[i].replace('\n', " "),
            r.after_sft[i].replace('\n', " "),
            r.after_dpo[i].replace('\n', " ")
        );
    }
    s
}

//! `kit quickstart`: the README's main job, judged by its outcome on held-out data.
//!
//! On the default model and the shipped Japanese data: answers to the held-out `pref_ja/dev` prompts before
//! training; SFT on `sft_ja` (the cold start: the model learns the chat format and to end its turn); DPO on
//! `pref_ja` starting from the SFT adapter (reference = the SFT model); answers after each phase. Then a table:
//! held-out losses, the rate of answers that end with the end-of-turn token, DPO's held-out accuracy per `flaw`
//! next to a length-only baseline, and a score independent of both losses (chrF against the dev set's preferred
//! answer). Adapter, metrics, plots and `answers.md` go to the output folder.
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use kit::data::{load_preference, load_sft, read_column, stratified_take, Origin, PreferenceRow, SftRow};
use kit::eval::{accuracy_by_group, answer_held_out, Answers, HeldOut, Laps};
use kit::lora::LoraConfig;
use kit::model::{LoadOptions, Model};
use kit::train::dpo::{DpoConfig, DpoReference};
use kit::train::sft::SftConfig;
use kit::train::{Objective, TrainOutput, Trainer, TrainingArguments};
use kit::{Error, Result};

pub use report::{summary_markdown, Phase, QuickstartReport};

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
    #[arg(long, default_value_t = 32)]
    pub sft_steps: usize,
    /// Peak learning rate of the SFT phase.
    #[arg(long, default_value_t = 1e-3)]
    pub sft_learning_rate: f64,
    /// Optimizer steps of the DPO phase.
    #[arg(long, default_value_t = 24)]
    pub dpo_steps: usize,
    /// Peak learning rate of the DPO phase.
    #[arg(long, default_value_t = 2e-4)]
    pub dpo_learning_rate: f64,
    /// DPO's β: how far the policy may move from the reference (higher = closer).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Examples (SFT) or pairs (DPO) per optimizer step.
    #[arg(long, default_value_t = 4)]
    pub per_device_train_batch_size: usize,
    /// LoRA rank (alpha = 2 × rank).
    #[arg(long, default_value_t = 16)]
    pub lora_r: usize,
    /// Longest answer generated for each held-out prompt.
    #[arg(long, default_value_t = 96)]
    pub max_new_tokens: usize,
    /// Held-out prompts answered before and after training (0 = all of pref_ja/dev).
    #[arg(long, default_value_t = 0)]
    pub num_prompts: usize,
    /// Also train SFT on the preferred answers of pref_ja/train (as one-turn conversations), as the DPO paper builds
    /// π_SFT when no SFT model exists (Rafailov et al. 2023, §4): the cold start then sees the kind of questions DPO
    /// and the held-out prompts ask.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub sft_on_chosen: bool,
    /// Seed of the LoRA initialisation, data order and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The `flaw` column of each row of a preference file ("-" where a row has none).
fn flaws(path: &Path) -> Result<Vec<String>> {
    read_column(path, "flaw")
}

pub fn run(a: QuickstartArgs) -> Result<QuickstartReport> {
    let started = Instant::now();
    let sft_dir = a.datasets.join("sft_ja");
    let pref_dir = a.datasets.join("pref_ja");
    for f in [
        sft_dir.join("train.jsonl"),
        sft_dir.join("dev.jsonl"),
        pref_dir.join("train.jsonl"),
        pref_dir.join("dev.jsonl"),
    ] {
        if !f.exists() {
            return Err(Error::file(
                &f,
                "missing (run from the repository root, or pass --datasets)",
            ));
        }
    }
    if a.per_device_train_batch_size == 0 || a.lora_r == 0 {
        return Err(Error::Input(
            "--per_device_train_batch_size and --lora_r must be at least 1".into(),
        ));
    }
    std::fs::create_dir_all(&a.output_dir).map_err(|e| Error::file(&a.output_dir, e))?;
    let mut laps = Laps::new();

    println!("== loading {}", a.model_name_or_path);
    let mut model = Model::load(&a.model_name_or_path, &LoadOptions::default())?;
    let adapter = model.attach_lora(&LoraConfig {
        r: a.lora_r,
        lora_alpha: 2.0 * a.lora_r as f64,
        init_seed: a.seed,
        ..Default::default()
    })?;
    println!("{}", adapter.summary(&model.decoder));

    // Held-out prompts: pref_ja/dev, whose preferred answers score the generations.
    let dev_path = pref_dir.join("dev.jsonl");
    let dev_rows = load_preference(&dev_path, false)?.rows;
    let dev_flaws = flaws(&dev_path)?;
    let mut held_out = HeldOut::from_preference_rows(&dev_rows, &dev_flaws);
    if a.num_prompts > 0 {
        held_out.truncate(a.num_prompts);
    }
    laps.lap("load");

    println!(
        "== answers before training ({} held-out prompts of {})",
        held_out.len(),
        dev_path.display()
    );
    let before = answer_held_out(&model, &held_out, a.max_new_tokens)?;
    print_answers(&held_out, &before, 3);
    laps.lap("answers before");

    let common = |steps: usize, lr: f64, sub: &str| TrainingArguments {
        output_dir: a.output_dir.join(sub),
        learning_rate: lr,
        per_device_train_batch_size: a.per_device_train_batch_size,
        per_device_eval_batch_size: 8,
        max_steps: Some(steps),
        warmup_ratio: 0.1,
        logging_steps: 4,
        eval_steps: Some(steps.max(1)),
        eval_on_start: true,
        seed: a.seed,
        ..Default::default()
    };
    println!("== SFT on {} ({} steps)", sft_dir.display(), a.sft_steps);
    let sft_cfg = SftConfig {
        args: common(a.sft_steps, a.sft_learning_rate, "sft"),
        max_length: Some(256),
        ..Default::default()
    };
    let mut sft_train = load_sft(sft_dir.join("train.jsonl"), false)?.rows;
    if a.sft_on_chosen {
        let pairs = load_preference(pref_dir.join("train.jsonl"), false)?.into_conversations();
        sft_train.extend(pairs.into_iter().map(|(at, p)| {
            (
                at,
                SftRow::PromptCompletion {
                    prompt: p.prompt,
                    completion: p.chosen,
                },
            )
        }));
    }
    let sft_eval = load_sft(sft_dir.join("dev.jsonl"), false)?.rows;
    let sft = train_or_stop(
        Trainer::from_rows(&model, &adapter, sft_cfg, &sft_train, &sft_eval)?,
        "SFT",
    )?;
    laps.lap("SFT");
    let after_sft = answer_held_out(&model, &held_out, a.max_new_tokens)?;
    println!("== answers after SFT");
    print_answers(&held_out, &after_sft, 3);
    laps.lap("answers after SFT");

    println!(
        "== DPO on {} ({} steps, reference = the SFT model)",
        pref_dir.display(),
        a.dpo_steps
    );
    let dpo_cfg = DpoConfig {
        args: TrainingArguments {
            // At step 0 the policy is the reference: every implicit reward is 0 and the loss is ln 2, so the
            // evaluation before training would only cost a pass over the held-out pairs.
            eval_on_start: false,
            ..common(a.dpo_steps, a.dpo_learning_rate, "dpo")
        },
        beta: a.beta,
        max_length: Some(256),
        reference: DpoReference::Initial,
        ..Default::default()
    };
    // pref_ja is plain text; as conversations the pairs are rendered by the chat template, as SFT trained the
    // model and as the answers are asked for.
    let train_path = pref_dir.join("train.jsonl");
    let train_rows: Vec<(Origin, PreferenceRow)> = load_preference(&train_path, false)?.into_conversations();
    // The reference (the SFT model) is scored once up front, so only the pairs this run will see are used.
    let per_run = a.dpo_steps * a.per_device_train_batch_size;
    let train_rows = stratified_take(train_rows, &flaws(&train_path)?, per_run, a.seed);
    let dev_conv: Vec<_> = dev_rows.into_iter().map(|(o, r)| (o, r.into_conversation())).collect();
    let mut trainer = Trainer::from_rows(&model, &adapter, dpo_cfg, &train_rows, &dev_conv)?;
    let dpo = crate::train::run_trainer(&mut trainer)?;
    check_interrupted(&dpo, &trainer.args.output_dir, "DPO")?;
    // Per-pair rewards on the held-out pairs, from the trainer's final evaluation: which flaws DPO learned to rank.
    let rewards = if trainer.objective.eval_rewards.len() == trainer.eval_data.len() {
        std::mem::take(&mut trainer.objective.eval_rewards)
    } else {
        trainer
            .objective
            .implicit_rewards(&model, &adapter, &trainer.eval_data, 8)?
    };
    let ranked: Vec<bool> = rewards.iter().map(|(c, r)| c > r).collect();
    let shorter: Vec<bool> = trainer
        .eval_data
        .iter()
        .map(|p| p.chosen.len() < p.rejected.len())
        .collect();
    drop(trainer);
    laps.lap("DPO");
    let after_dpo = answer_held_out(&model, &held_out, a.max_new_tokens)?;
    println!("== answers after DPO");
    print_answers(&held_out, &after_dpo, 3);
    laps.lap("answers after DPO");

    let report = QuickstartReport {
        model: a.model_name_or_path.clone(),
        held_out,
        phases: [("before", before), ("after SFT", after_sft), ("after DPO", after_dpo)]
            .into_iter()
            .map(|(name, answers)| Phase {
                name: name.into(),
                answers,
            })
            .collect(),
        sft,
        dpo,
        dpo_by_flaw: accuracy_by_group(&dev_flaws, &ranked),
        length_by_flaw: accuracy_by_group(&dev_flaws, &shorter),
        timings: laps.parts,
        wall_s: started.elapsed().as_secs_f64(),
    };
    let md = summary_markdown(&report);
    println!("{}", report::summary_table(&report));
    kit::io::write_atomic(a.output_dir.join("answers.md"), md.as_bytes())?;
    println!(
        "== written to {}: sft/ and dpo/ (adapter, metrics.jsonl, *.svg plots), answers.md",
        a.output_dir.display()
    );
    Ok(report)
}

/// Train with Ctrl-C handling: an interrupted phase saves its checkpoint and ends the quickstart.
fn train_or_stop<O: Objective>(mut trainer: Trainer<'_, O>, phase: &str) -> Result<TrainOutput> {
    let out = crate::train::run_trainer(&mut trainer)?;
    check_interrupted(&out, &trainer.args.output_dir, phase)?;
    Ok(out)
}

fn check_interrupted(out: &TrainOutput, output_dir: &Path, phase: &str) -> Result<()> {
    if out.interrupted {
        return Err(Error::msg(format!(
            "interrupted during {phase}; its checkpoint is in {}",
            output_dir.display()
        )));
    }
    Ok(())
}

fn print_answers(held_out: &[HeldOut], answers: &Answers, n: usize) {
    for (h, a) in held_out.iter().zip(&answers.texts).take(n) {
        println!("Q: {}\nA: {}\n", h.prompt, a.replace('\n', " "));
    }
}

//! SFT, then DPO from the SFT adapter, judged on held-out data: the README's main job (`kit quickstart` calls it).
//!
//! On a model and a folder holding `sft_ja/` and `pref_ja/`: answers to the held-out `pref_ja/dev` prompts before
//! training; SFT on `sft_ja` (the cold start: the model learns the chat format and to end its turn); DPO on `pref_ja`
//! starting from the SFT adapter (reference = the SFT model); answers after each phase. The report holds held-out
//! losses, the rate of answers that end with the end-of-turn token, DPO's held-out accuracy per `flaw` next to a
//! length-only baseline, and a score independent of both losses (chrF against the dev set's preferred answer).
//! Adapters, metrics, charts and `answers.md` go to the output folder.
//!
//! ```no_run
//! use kit::recipes::{sft_then_dpo, PlainRun, SftThenDpo};
//! let report = sft_then_dpo(&SftThenDpo { sft_steps: 8, dpo_steps: 8, ..Default::default() }, &mut PlainRun)?;
//! println!("{}", report.outcome_table());
//! # Ok::<(), kit::Error>(())
//! ```
mod report;

use std::path::PathBuf;
use std::time::Instant;

use crate::data::{load_preference, load_sft, read_column, stratified_take, Origin, PreferenceRow, SftRow};
use crate::eval::{accuracy_by_group, answer_held_out, Answers, HeldOut, Laps};
use crate::lora::LoraConfig;
use crate::model::{LoadOptions, Model};
use crate::train::dpo::{DpoConfig, DpoReference};
use crate::train::sft::SftConfig;
use crate::train::{Objective, TrainOutput, Trainer, TrainingArguments};
use crate::{Error, Result};

pub use report::{summary_markdown, summary_table, Phase, SftThenDpoReport};

/// The recipe's knobs; the defaults are the main job's (chosen on dev splits, see the README).
#[derive(Debug, Clone)]
pub struct SftThenDpo {
    /// Model alias, local directory/.gguf, or hub id.
    pub model_name_or_path: String,
    /// The folder holding `sft_ja/` and `pref_ja/`.
    pub datasets: PathBuf,
    /// Where `sft/`, `dpo/` and `answers.md` go.
    pub output_dir: PathBuf,
    pub sft_steps: usize,
    pub sft_learning_rate: f64,
    pub dpo_steps: usize,
    pub dpo_learning_rate: f64,
    /// DPO's β: how far the policy may move from the reference (higher = closer).
    pub beta: f64,
    /// Examples (SFT) or pairs (DPO) per optimizer step.
    pub per_device_train_batch_size: usize,
    /// LoRA rank (alpha = 2 × rank).
    pub lora_r: usize,
    /// Longest answer generated for each held-out prompt.
    pub max_new_tokens: usize,
    /// Held-out prompts answered before and after training (0 = all of `pref_ja/dev`).
    pub num_prompts: usize,
    /// Also train SFT on the preferred answers of `pref_ja/train` (as one-turn conversations), as the DPO paper
    /// builds π_SFT when no SFT model exists (Rafailov et al. 2023, §4).
    pub sft_on_chosen: bool,
    /// Seed of the LoRA initialisation, data order and dropout.
    pub seed: u64,
}

impl Default for SftThenDpo {
    fn default() -> Self {
        SftThenDpo {
            model_name_or_path: "gemma3-270m".into(),
            datasets: "datasets".into(),
            output_dir: "outputs/quickstart".into(),
            sft_steps: 32,
            sft_learning_rate: 1e-3,
            dpo_steps: 24,
            dpo_learning_rate: 2e-4,
            beta: 0.1,
            per_device_train_batch_size: 4,
            lora_r: 16,
            max_new_tokens: 96,
            num_prompts: 0,
            sft_on_chosen: false,
            seed: 42,
        }
    }
}

/// How a recipe runs each of its trainers: a front end adds its progress display and stop flag here (the `kit`
/// command line: a progress bar and Ctrl-C). A run that comes back interrupted ends the recipe.
pub trait RunTrainer {
    fn run<O: Objective>(&mut self, trainer: &mut Trainer<'_, O>) -> Result<TrainOutput>;
}

/// Each trainer as it was built: `trainer.train()` with its plain progress lines.
pub struct PlainRun;

impl RunTrainer for PlainRun {
    fn run<O: Objective>(&mut self, trainer: &mut Trainer<'_, O>) -> Result<TrainOutput> {
        trainer.train()
    }
}

/// Run the recipe (see the module's docs).
pub fn sft_then_dpo(a: &SftThenDpo, runner: &mut impl RunTrainer) -> Result<SftThenDpoReport> {
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
    let dev_flaws = read_column(&dev_path, "flaw")?;
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
    let mut trainer = Trainer::from_rows(&model, &adapter, sft_cfg, &sft_train, &sft_eval)?;
    let sft = run_to_end(runner, &mut trainer, "SFT")?;
    drop(trainer);
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
    let train_rows = stratified_take(train_rows, &read_column(&train_path, "flaw")?, per_run, a.seed);
    let dev_conv: Vec<_> = dev_rows.into_iter().map(|(o, r)| (o, r.into_conversation())).collect();
    let mut trainer = Trainer::from_rows(&model, &adapter, dpo_cfg, &train_rows, &dev_conv)?;
    let dpo = run_to_end(runner, &mut trainer, "DPO")?;
    // Which flaws DPO learned to rank, next to what the answers' lengths alone would rank.
    let ranked = trainer.held_out_ranking()?;
    let shorter = trainer.held_out_length_baseline();
    drop(trainer);
    laps.lap("DPO");
    let after_dpo = answer_held_out(&model, &held_out, a.max_new_tokens)?;
    println!("== answers after DPO");
    print_answers(&held_out, &after_dpo, 3);
    laps.lap("answers after DPO");

    let report = SftThenDpoReport {
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
    println!("{}", summary_table(&report));
    crate::io::write_atomic(a.output_dir.join("answers.md"), md.as_bytes())?;
    println!(
        "== written to {}: sft/ and dpo/ (adapter, metrics.jsonl, *.svg plots), answers.md",
        a.output_dir.display()
    );
    Ok(report)
}

/// Run one phase; an interrupted phase (its checkpoint saved) ends the recipe.
fn run_to_end<O: Objective>(
    runner: &mut impl RunTrainer,
    trainer: &mut Trainer<'_, O>,
    phase: &str,
) -> Result<TrainOutput> {
    let out = runner.run(trainer)?;
    if out.interrupted {
        return Err(Error::msg(format!(
            "interrupted during {phase}; its checkpoint is in {}",
            trainer.args.output_dir.display()
        )));
    }
    Ok(out)
}

fn print_answers(held_out: &[HeldOut], answers: &Answers, n: usize) {
    for (h, a) in held_out.iter().zip(&answers.texts).take(n) {
        println!("Q: {}\nA: {}\n", h.prompt, a.replace('\n', " "));
    }
}

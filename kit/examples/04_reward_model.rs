//! Notebook 04 as a program: a Bradley–Terry reward model (LoRA on Gemma 3 270M plus a scalar head) trained on
//! `pref_ja/train` as one-turn conversations, evaluated on `pref_ja/dev` while training; then its agreement on
//! `pref_ja/test` (per `flaw`, next to a length-only baseline) and the scores of a few answers to 「ねこは好きですか？」.
//! The adapter and head land in outputs/04_reward_model/, where notebooks 05, 06 and 09 load them.
//! Run `cargo run --release --example 04_reward_model`.
use kit::prelude::*;

fn file(split: &str) -> String {
    format!("datasets/pref_ja/{split}.jsonl")
}

fn main() -> anyhow::Result<()> {
    let model_id = "gemma3-270m";
    let load = LoadOptions {
        load_in_4bit: true,
        ..Default::default()
    };
    let mut model = Model::load(model_id, &load)?;
    let adapter = model.attach_lora(&LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        init_seed: 42,
        ..Default::default()
    })?;
    println!("{}", adapter.summary(&model.decoder));

    let train = load_preference(file("train"), false)?.into_conversations();
    let dev = load_preference(file("dev"), false)?.into_conversations();
    let test = load_preference(file("test"), false)?.into_conversations();

    let cfg = RewardConfig {
        args: TrainingArguments {
            output_dir: "outputs/04_reward_model".into(),
            learning_rate: 3e-4, // the notebook's value, chosen on dev
            warmup_ratio: 0.1,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 8,
            max_steps: Some(64),
            logging_steps: 4,
            eval_steps: Some(16),
            eval_on_start: true,
            seed: 42,
            ..Default::default()
        },
        max_length: Some(256),
        ..Default::default()
    };
    let (out, head, dev_scores) = {
        let mut trainer = reward_trainer_from_rows(&model, &adapter, &train, &dev, &cfg)?;
        let out = trainer.train()?;
        (
            out,
            trainer.objective.head.clone(),
            trainer.objective.eval_rewards.clone(),
        )
    };
    for key in ["eval_loss", "eval_accuracy"] {
        println!("{key}: {:?}", out.series(key));
    }
    let dev_right = dev_scores.iter().filter(|(c, r)| c > r).count();
    println!("dev: chosen scored higher in {dev_right} of {} pairs", dev_scores.len());

    // The final figure, measured once: agreement with the pairs' labels on test.
    let rm = RewardModel::new(model, adapter, head);
    let agree: Vec<bool> = rm
        .score_pairs(&test, cfg.max_length)?
        .iter()
        .map(|(c, r)| c > r)
        .collect();
    let (chosen, rejected) = (
        read_column(file("test"), "chosen")?,
        read_column(file("test"), "rejected")?,
    );
    let shorter: Vec<bool> = chosen
        .iter()
        .zip(&rejected)
        .map(|(c, r)| c.chars().count() < r.chars().count())
        .collect();
    let flaws = read_column(file("test"), "flaw")?;
    let table = accuracy_table(
        "flaw",
        &[
            (
                "reward model (chosen scored higher)",
                &accuracy_by_group(&flaws, &agree),
            ),
            ("length only (shorter = chosen)", &accuracy_by_group(&flaws, &shorter)),
        ],
    );
    println!("pref_ja/test (the lecture: CAT-RM 0.667, GPT-4o 0.792, calm3 0.771 on another benchmark)\n{table}");

    let question = "ねこは好きですか？";
    let answers = ["ねこはかわいい。", "ねこはかわいくない。", "Yes, I love cats."];
    for (a, s) in answers.iter().zip(rm.score_chat(&answers.map(|a| (question, a)))?) {
        println!("{question} → {a}: {s:+.2}");
    }
    Ok(())
}

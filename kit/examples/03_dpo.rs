//! Notebook 03 as a program: DPO of Gemma 3 270M starting from 02's SFT adapter, the reference being that SFT model
//! (`DpoReference::Initial`), on a flaw-stratified part of `pref_ja/train` rendered as conversations. Prints the
//! held-out (pref_ja/dev) accuracy per `flaw` next to a length-only baseline; curves land in outputs/03_dpo/.
//! Run `cargo run --release --example 02_sft` first, then `cargo run --release --example 03_dpo`.
use kit::prelude::*;

fn main() -> anyhow::Result<()> {
    // The same model as 02 (its adapter is loaded on top).
    let model_id = "gemma3-270m";
    let mut model = Model::load(
        model_id,
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;
    let adapter = model.load_adapter("outputs/02_sft")?;
    println!("{}", adapter.summary(&model.decoder));

    let (train_file, dev_file) = ("datasets/pref_ja/train.jsonl", "datasets/pref_ja/dev.jsonl");
    // pref_ja is sorted by flaw: take 96 pairs with every flaw in its share, as one-turn conversations.
    let train = stratified_take(
        load_preference(train_file, false)?.into_conversations(),
        &read_column(train_file, "flaw")?,
        96,
        42,
    );
    let dev = load_preference(dev_file, false)?.into_conversations();
    let dev_flaws = read_column(dev_file, "flaw")?;

    let cfg = DpoConfig {
        args: TrainingArguments {
            output_dir: "outputs/03_dpo".into(),
            learning_rate: 2e-4,
            warmup_ratio: 0.1,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 8,
            max_steps: Some(24),
            logging_steps: 4,
            eval_steps: Some(12),
            eval_on_start: true,
            seed: 42,
            ..Default::default()
        },
        beta: 0.1,
        max_length: Some(256),
        reference: DpoReference::Initial,
        ..Default::default()
    };
    let mut trainer = dpo_trainer_from_rows(&model, &adapter, &train, &dev, &cfg)?;
    let out = trainer.train()?;
    for key in ["eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"] {
        println!("{key}: {:?}", out.series(key));
    }
    // Whether each dev pair is ranked right (from the last evaluation); the length-only baseline calls the shorter
    // answer chosen.
    let ranked = trainer.held_out_ranking()?;
    let shorter = trainer.held_out_length_baseline();
    let table = accuracy_table(
        "flaw",
        &[
            ("DPO (chosen's reward higher)", &accuracy_by_group(&dev_flaws, &ranked)),
            (
                "length only (shorter = chosen)",
                &accuracy_by_group(&dev_flaws, &shorter),
            ),
        ],
    );
    println!("{table}");
    Ok(())
}

//! Notebook 02 as a program: cold-start LoRA SFT of the Gemma 3 270M base model on `sft_ja` (loss on the responses
//! only), the held-out loss before and after, how many held-out questions get an answer that ends with the
//! end-of-turn token, and the answers' chrF against the preferred ones. The adapter lands in outputs/02_sft, where
//! `03_dpo` starts from it.
//! Run from the repository root: `cargo run --release --example 02_sft`.
use kit::prelude::*;

fn main() -> anyhow::Result<()> {
    // On a T4 (build with --features cuda), change this one line to a 0.5B–3B model, e.g. "Qwen/Qwen2.5-0.5B".
    let model_id = "gemma3-270m";
    let mut model = Model::load(
        model_id,
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;

    // Held-out questions: the prompts of pref_ja/dev, with their preferred answers as references. Greedy, no
    // repetition penalty (it would also push down the end-of-turn token and hide whether the model learned to stop).
    let dev_file = "datasets/pref_ja/dev.jsonl";
    let held_out =
        HeldOut::from_preference_rows(&load_preference(dev_file, false)?.rows, &read_column(dev_file, "flaw")?);
    let before = answer_held_out(&model, &held_out, 96)?;

    let adapter = model.attach_lora(&LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        init_seed: 42,
        ..Default::default()
    })?;
    println!("{}", adapter.summary(&model.decoder));
    let cfg = SftConfig {
        args: TrainingArguments {
            output_dir: "outputs/02_sft".into(),
            learning_rate: 5e-4,
            warmup_ratio: 0.1,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 8,
            max_steps: Some(24),
            logging_steps: 4,
            eval_steps: Some(24),
            eval_on_start: true,
            seed: 42,
            ..Default::default()
        },
        max_length: Some(256),
        ..Default::default()
    };
    // The folder means its train.jsonl, with its dev.jsonl for the held-out loss.
    let out = train_sft(&model, &adapter, "datasets/sft_ja", None, &cfg)?;
    let eval_loss = out.series("eval_loss");
    let (l0, l1) = (eval_loss[0].1, eval_loss[eval_loss.len() - 1].1);
    println!(
        "eval_loss (sft_ja/dev): {l0:.3} → {l1:.3} ({:+.0}%)",
        100.0 * (l1 / l0 - 1.0)
    );

    let after = answer_held_out(&model, &held_out, 96)?;
    let n = held_out.len();
    println!(
        "answers ending with end-of-turn: before {}/{n}, after SFT {}/{n}; mean chrF {:.1} → {:.1}",
        before.ended_count(),
        after.ended_count(),
        before.mean_chrf(),
        after.mean_chrf()
    );
    let mut table = Table::new(&["質問", "SFT 前", "SFT 後"]);
    for ((h, b), a) in held_out.iter().zip(&before.texts).zip(&after.texts).take(4) {
        table.push(&[&h.prompt, b, a]);
    }
    println!("{table}");
    Ok(())
}

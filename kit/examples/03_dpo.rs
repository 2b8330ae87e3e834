//! Notebook 03 as a program: DPO of Gemma 3 270M with LoRA on `pref_ja`, the reference being the base model (adapter
//! off); the four implicit-reward curves land in outputs/03_dpo/rewards.svg and eval_rewards.svg.
//! Run from the repository root: `cargo run --release --example 03_dpo`.
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
    let lora = LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        init_seed: 42, // the CLI's default seed, so `kit dpo` with the same flags is the same run
        ..Default::default()
    };
    let adapter = model.attach_lora(&lora)?;
    let cfg = DpoConfig {
        args: TrainingArguments {
            output_dir: "outputs/03_dpo".into(),
            learning_rate: 5e-4,
            per_device_train_batch_size: 2,
            max_steps: Some(20),
            logging_steps: 5,
            eval_steps: Some(10),
            eval_on_start: true,
            ..Default::default()
        },
        beta: 0.1,
        max_length: Some(192),
        ..Default::default()
    };
    // The folder means its train.jsonl, with its dev.jsonl for evaluation.
    let out = train_dpo(&model, &adapter, "datasets/pref_ja", None, &cfg)?;
    for key in ["eval_rewards/accuracies", "eval_rewards/margins"] {
        println!("{key}: {:?}", out.series(key));
    }
    Ok(())
}

//! Notebook 02 as a program: cold-start LoRA SFT of the Gemma 3 270M base model on `sft_ja` (loss on the responses
//! only), answers before and after, and the loss curve (outputs/02_sft/loss.svg).
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
    let lora = LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        ..Default::default()
    };
    let adapter = model.attach_lora(&lora)?;
    println!("{}", adapter.summary(&model.decoder));

    let questions = [
        "なぜ海の水はしょっぱいのですか。",
        "「二酸化炭素が増えると地球が暖かくなる」のはなぜですか。",
        "朝ごはんを食べるとよい理由を教えてください。",
    ];
    let mut gen_cfg = GenerationConfig::greedy(64).with_chat(true);
    gen_cfg.sampling.repetition_penalty = 1.3;
    let before = model.generate_texts(&questions, &gen_cfg)?;

    let cfg = SftConfig {
        args: TrainingArguments {
            output_dir: "outputs/02_sft".into(),
            learning_rate: 2e-4,
            per_device_train_batch_size: 2,
            max_steps: Some(20),
            logging_steps: 5,
            eval_steps: Some(10),
            eval_on_start: true,
            ..Default::default()
        },
        max_length: Some(192),
        ..Default::default()
    };
    // The folder means its train.jsonl, with its dev.jsonl for the held-out loss.
    let out = train_sft(&model, &adapter, "datasets/sft_ja", None, &cfg)?;
    println!("held-out loss: {:?}", out.series("eval_loss"));

    let after = model.generate_texts(&questions, &gen_cfg)?;
    let mut table = Table::new(&["質問", "SFT 前", "SFT 後"]);
    for i in 0..questions.len() {
        table.push(&[questions[i], before[i].trim(), after[i].trim()]);
    }
    println!("{table}");
    Ok(())
}

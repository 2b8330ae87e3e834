//! Notebook 00 as a program: the machine's budget (RAM, VRAM, versions), the device kit picks, the memory plan for
//! QLoRA training of 0.27B–3B models, the Japanese chart font, a first generation with Gemma 3 270M, and the peak
//! memory of one LoRA training step next to the plan for that step. Run: `cargo run --release --example 00_setup`
//! (from the repository root).
use kit::prelude::*;

fn main() -> anyhow::Result<()> {
    println!("kit {}", kit::VERSION);
    println!("{}", Machine::detect().table());
    let picked = pick_device(DeviceChoice::Auto)?;
    println!("device: {:?}, activations: {:?}", picked.device, picked.dtype);

    println!("{}", MemoryPlan::table(&MemoryPlan::course()));

    let font = kit::hub::fetch_cjk_font()?;
    println!("chart font: {}", font.file_name().unwrap_or_default().to_string_lossy());

    let rss_start = current_memory_gib().unwrap_or(f64::NAN);
    // On a T4 (build with --features cuda), change this one line to a 0.5B–3B model, e.g. "Qwen/Qwen2.5-0.5B".
    let model_id = "gemma3-270m";
    let mut model = Model::load(
        model_id,
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;
    println!(
        "{} parameters, vocabulary {}",
        model.decoder.num_parameters(),
        model.config().vocab_size
    );
    let out = model.generate(&["日本の首都は"], &GenerationConfig::greedy(16))?;
    println!("日本の首都は{}", out[0].text);

    // One LoRA SFT step (batch 2, up to 192 tokens, as in notebook 02), measured.
    let adapter = model.attach_lora(&LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        ..Default::default()
    })?;
    let cfg = SftConfig {
        args: TrainingArguments {
            output_dir: "outputs/00_setup".into(),
            per_device_train_batch_size: 2,
            max_steps: Some(1),
            logging_steps: 1,
            ..Default::default()
        },
        max_length: Some(192),
        ..Default::default()
    };
    let rss_before = current_memory_gib().unwrap_or(f64::NAN);
    let peak_before = peak_memory_gib().unwrap_or(f64::NAN);
    let run = train_sft(&model, &adapter, "datasets/sft_ja/train.jsonl", None, &cfg)?;
    let peak = peak_memory_gib().unwrap_or(f64::NAN);
    let tokens = run.series("num_tokens").last().map_or(0, |p| p.1 as usize);
    let plan = MemoryPlan::new("this step", ModelShape::of(&model), 4.5, 1, tokens, 4.0);
    println!("{tokens} tokens in the step");
    for g in kit::system::nvidia_gpus() {
        println!(
            "{}: {:.1} GiB of {:.1} GiB VRAM in use",
            g.name, g.used_gib, g.total_gib
        );
    }
    let mut table = Table::new(&[
        "plan for this step (f32 activations) / measured RSS of this process",
        "GiB",
    ]);
    let rows = [
        ("plan: base weights (4-bit)", plan.base_gib),
        ("plan: LoRA + AdamW", plan.lora_gib),
        ("plan: activations", plan.activations_gib),
        ("plan: LoRA + AdamW + activations", plan.lora_gib + plan.activations_gib),
        ("measured: before loading the model", rss_start),
        ("measured: before the training step (model loaded)", rss_before),
        ("measured: peak before the step (loading, generation)", peak_before),
        ("measured: peak so far (after the step)", peak),
        ("measured: peak − before the step", peak - rss_before),
    ];
    for (what, gib) in rows {
        table.push(&[what.to_string(), format!("{gib:.2}")]);
    }
    table.push(&[
        "measured (peak − before the step) / plan (LoRA + AdamW + activations)".to_string(),
        format!("{:.1}", (peak - rss_before) / (plan.lora_gib + plan.activations_gib)),
    ]);
    println!("{table}");
    Ok(())
}

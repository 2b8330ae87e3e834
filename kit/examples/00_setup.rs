//! Notebook 00 as a program: the device kit picks, the memory plan for QLoRA training of 0.27B–3B models, and a first
//! generation with Gemma 3 270M. Run: `cargo run --release --example 00_setup`.
use kit::prelude::*;

fn main() -> anyhow::Result<()> {
    println!("kit {}", kit::VERSION);
    let picked = pick_device(DeviceChoice::Auto)?;
    println!("device: {:?}, activations: {:?}", picked.device, picked.dtype);

    println!("{}", MemoryPlan::table(&MemoryPlan::course()));

    // On a T4 (build with --features cuda), change this one line to a 0.5B–3B model, e.g. "Qwen/Qwen2.5-0.5B".
    let model_id = "gemma3-270m";
    let model = Model::load(
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
    Ok(())
}

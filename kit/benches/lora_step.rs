//! One QLoRA training step on SmolLM2-135M: LoRA r = 16 on all seven projections, batch 4 × 256 tokens,
//! forward + backward + AdamW. Prints seconds/step, tokens/s and peak RSS for the GGUF (quantized) base and the
//! dequantized dense base, each measured in its own process so that peak memory is not shared.
//! Run: `cargo bench -p kit --bench lora_step`.
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use kit::lora::LoraConfig;
use kit::prelude::*;

const BATCH: usize = 4;
const SEQ: usize = 256;
const STEPS: usize = 3;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn run(dense: bool) -> anyhow::Result<()> {
    let mut model = Model::load(
        "smollm2-135m",
        &LoadOptions {
            dequantize: dense,
            ..Default::default()
        },
    )?;
    let cfg = LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        ..Default::default()
    };
    let adapter = model.attach_lora(&cfg)?;
    adapter.set_training(true);
    let mut opt = AdamW::new(
        adapter.vars(),
        ParamsAdamW {
            lr: 1e-4,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let ids: Vec<u32> = (0..BATCH * SEQ).map(|i| (i * 7919 % 40_000 + 100) as u32).collect();
    let ids = Tensor::from_vec(ids, (BATCH, SEQ), model.device())?;
    let mut times = vec![];
    for _ in 0..STEPS + 1 {
        let t0 = Instant::now();
        let logits = model.decoder.forward(&ids, None, None)?;
        let loss = kit::loss::causal_lm_loss(&logits, &ids, None)?;
        opt.backward_step(&loss)?;
        let _ = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let step = times[1..].iter().sum::<f64>() / STEPS as f64; // the first step warms caches
    println!(
        "| {} | {} | {step:.2} | {:.0} | {:.0} |",
        if dense {
            "dense f32 (dequantized)"
        } else {
            "GGUF Q4_1 (as Q8_0 on CPU)"
        },
        adapter.num_trainable(),
        (BATCH * SEQ) as f64 / step,
        peak_rss_mb()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--one") {
        return run(args.get(pos + 1).map(String::as_str) == Some("dense"));
    }
    println!(
        "LoRA r=16 on all 7 projections of SmolLM2-135M, batch {BATCH} × {SEQ} tokens, AdamW, {STEPS} timed steps"
    );
    println!("| base | trainable params | s/step | tokens/s | peak RSS MB |");
    println!("|---|---|---|---|---|");
    let exe = std::env::current_exe()?;
    for mode in ["quantized", "dense"] {
        let out = std::process::Command::new(&exe).args(["--one", mode]).output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

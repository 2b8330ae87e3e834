//! One QLoRA training step on SmolLM2-135M: LoRA r = 16 on all seven projections, batch 4 × 256 tokens,
//! forward + backward + AdamW, the loss SFT computes (mean next-token cross-entropy through `logps::token_scores`).
//! Prints seconds/step, tokens/s and peak RSS for the GGUF (quantized) base and the dequantized dense base, each
//! measured in its own process so that peak memory is not shared, then — when
//! `kit/benches/reference/pytorch.sh` has made its venv — the same step in PyTorch + PEFT on the same weights,
//! measured right after, and the ratios.
//! Run: `cargo bench -p kit --bench lora_step`.
use std::time::Instant;

use candle_core::DType;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use kit::data::tokenize::Tokenized;
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

fn run(mode: &str) -> anyhow::Result<()> {
    let dense = mode == "dense";
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
    let _checkpointing = adapter.checkpointing_scope(mode == "checkpointed");
    let _bf16 = adapter.bf16_scope(mode == "bf16");
    let mut opt = AdamW::new(
        adapter.vars(),
        ParamsAdamW {
            lr: 1e-4,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    // The token ids PyTorch's side uses too (kit/benches/reference/pytorch_steps.py).
    let rows: Vec<Tokenized> = (0..BATCH)
        .map(|r| Tokenized {
            ids: (0..SEQ).map(|j| ((r * SEQ + j) * 7919 % 40_000 + 100) as u32).collect(),
            completion_mask: vec![true; SEQ],
        })
        .collect();
    let batch = kit::logps::collate(&rows.iter().collect::<Vec<_>>(), 0, model.device())?;
    reset_peak_rss();
    let mut times = vec![];
    for _ in 0..STEPS + 1 {
        let t0 = Instant::now();
        let scores = kit::logps::token_scores(&model.decoder, &batch)?;
        let loss = (scores.logps.mean_all()? * -1.0)?;
        opt.step(&adapter.backward(&loss)?)?;
        let _ = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.remove(0); // the first step warms caches
    times.sort_by(f64::total_cmp);
    let step = times[times.len() / 2];
    // One line for the parent: s/step, peak RSS MB.
    println!("RESULT {step:.4} {:.0}", peak_rss_mb());
    Ok(())
}

/// Reset the process's peak RSS (VmHWM) so that it measures the training steps, not loading (Linux; as the
/// PyTorch side does).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// (s/step, peak RSS MB) from a child's `RESULT` line.
fn parse_result(stdout: &[u8]) -> Option<(f64, f64)> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    let mut it = line.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some((it.next()??, it.next()??))
}

fn run_child(cmd: &mut std::process::Command) -> Option<(f64, f64)> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    parse_result(&out.stdout)
}

#[path = "common/summary.rs"]
mod summary;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--one") {
        return run(args.get(pos + 1).map_or("quantized", String::as_str));
    }
    println!("{}\n", kit::system::cpu_summary());
    println!(
        "LoRA r=16 on all 7 projections of SmolLM2-135M, batch {BATCH} × {SEQ} tokens, AdamW; median of {STEPS} steps after one; peak RSS of the steps"
    );
    let exe = std::env::current_exe()?;
    let mut rows: Vec<(String, Option<(f64, f64)>)> = vec![];
    for (mode, label) in [
        ("quantized", "kit, GGUF base"),
        ("dense", "kit, dense (dequantized) base"),
        ("checkpointed", "kit, GGUF base, gradient_checkpointing"),
        ("bf16", "kit, GGUF base, bf16"),
    ] {
        rows.push((
            label.into(),
            run_child(std::process::Command::new(&exe).args(["--one", mode])),
        ));
    }
    let python = kit::hub::kit_home().join("reference/torch-venv/bin/python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/pytorch_steps.py");
    let gguf = match kit::hub::resolve("smollm2-135m")? {
        kit::hub::ModelFiles::Gguf(path) => Some(path),
        _ => None,
    };
    match (python.exists(), gguf) {
        (true, Some(gguf)) => {
            for (autocast, label) in [
                ("none", "PyTorch + PEFT, f32"),
                ("bf16", "PyTorch + PEFT, bf16 autocast"),
            ] {
                let mut cmd = std::process::Command::new(&python);
                cmd.arg(&script).args(["lora", "--gguf"]).arg(&gguf).args([
                    "--batch",
                    &BATCH.to_string(),
                    "--seq",
                    &SEQ.to_string(),
                    "--steps",
                    &STEPS.to_string(),
                    "--autocast",
                    autocast,
                ]);
                rows.push((label.into(), run_child(&mut cmd)));
            }
        }
        _ => println!(
            "(no {}: run kit/benches/reference/pytorch.sh for the PyTorch rows)",
            python.display()
        ),
    }
    let reference = rows
        .iter()
        .find(|(l, _)| l == "PyTorch + PEFT, f32")
        .and_then(|(_, r)| *r);
    println!("| run | s/step | tokens/s | peak RSS MB | time / PyTorch f32 | memory / PyTorch f32 |");
    println!("|---|---|---|---|---|---|");
    for (label, result) in &rows {
        let Some((step, rss)) = result else {
            println!("| {label} | failed | | | | |");
            continue;
        };
        let ratio = |a: f64, b: f64| format!("{:.2}×", a / b);
        let (t, m) = reference.map_or((String::new(), String::new()), |(rs, rm)| {
            (ratio(*step, rs), ratio(*rss, rm))
        });
        println!(
            "| {label} | {step:.2} | {:.0} | {rss:.0} | {t} | {m} |",
            (BATCH * SEQ) as f64 / step
        );
        if let (Some((rs, _)), true) = (reference, label.starts_with("kit, GGUF base")) {
            summary::row(
                &format!("LoRA step, r=16 all 7 projections, {BATCH}×{SEQ}, AdamW ({label}; s, peak RSS)"),
                &format!("{step:.2} s, {:.1} GB", rss / 1024.0),
                &format!("{rs:.2} s (PyTorch + PEFT f32)"),
                &t,
                "≤ 1.0×, ≤ 3 GB",
                "≤ 0.5×, ≤ 2 GB",
            );
        }
    }
    Ok(())
}

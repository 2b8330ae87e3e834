//! DPO and GRPO optimizer-step time and peak memory on SmolLM2-135M (GGUF base, LoRA r = 16 on all projections),
//! through the real trainers on the shipped data. Each trainer runs in its own process so peak RSS is its own. Once
//! `kit/benches/reference/pytorch.sh` has made its venv, TRL's DPOTrainer and GRPOTrainer run the same shapes right
//! after kit (`kit/benches/reference/pytorch_steps.py`), and the table gives the ratios.
//! Run: `cargo bench -p kit --bench train_step` (`KIT_BENCH_ONLY=grpo8`: the rows whose mode starts so).
use std::path::PathBuf;

use kit::lora::LoraConfig;
use kit::prelude::*;
use kit::train::dpo::{Dpo, DpoConfig};
use kit::train::grpo::{Grpo, GrpoConfig};
use kit::train::{Trainer, TrainingArguments};

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

fn datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets")
}

fn args(name: &str, bs: usize) -> TrainingArguments {
    TrainingArguments {
        gradient_checkpointing: name.contains("-ckpt"),
        bf16: name.contains("-bf16"),
        output_dir: std::env::temp_dir().join(format!("kit-bench-{name}-{}", std::process::id())),
        learning_rate: 1e-5,
        per_device_train_batch_size: bs,
        max_steps: Some(STEPS),
        logging_steps: 1,
        disable_tqdm: true,
        ..Default::default()
    }
}

fn run(which: &str) -> anyhow::Result<()> {
    let mut model = Model::load("smollm2-135m", &LoadOptions::default())?;
    let cfg = LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        ..Default::default()
    };
    let adapter = model.attach_lora(&cfg)?;
    // The peak of training, not of loading (as the TRL side resets it when training begins).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    if which == "dpo-eval" {
        // issue 12's evaluation row: 8 held-out pairs, max_length 256, one batch of 8 (transformers' default), no
        // gradients; peak RSS of the evaluation.
        let c = DpoConfig {
            args: TrainingArguments {
                per_device_eval_batch_size: 8,
                ..args(which, 4)
            },
            max_length: Some(256),
            ..Default::default()
        };
        let rows = kit::data::load_preference(datasets().join("pref_ja/dev.jsonl"), false)?.rows;
        let data = kit::train::dpo::prepare(&model, &rows[..8], &c)?;
        let tokens: usize = data.iter().map(|p| p.chosen.ids.len() + p.rejected.ids.len()).sum();
        let mut trainer =
            Trainer::new(&model, &adapter, Dpo::new(&model, c.clone()), c.args.clone()).with_data(vec![], data);
        let start = std::time::Instant::now();
        trainer.evaluate(0)?;
        let secs = start.elapsed().as_secs_f64();
        println!("DPO evaluation: 8 held-out pairs ≤ 256 tokens, batch 8 (s per evaluation)");
        println!("RESULT {secs:.4} {:.0} {:.0}", peak_rss_mb(), tokens as f64 / secs);
        return Ok(());
    }
    let (label, out) = match which {
        "dpo" | "dpo-ckpt" | "dpo-bf16" => {
            let c = DpoConfig {
                args: args(which, 4),
                max_length: Some(256),
                ..Default::default()
            };
            let rows = kit::data::load_preference(datasets().join("pref_ja/train.jsonl"), false)?.rows;
            let data = kit::train::dpo::prepare(&model, &rows[..16], &c)?;
            let out = Trainer::new(&model, &adapter, Dpo::new(&model, c.clone()), c.args.clone())
                .with_data(data, vec![])
                .train()?;
            ("DPO: 4 pairs/step, reference pass each step".to_string(), out)
        }
        _ => {
            // "grpo": the README's row; "grpo8": issue 12's (2 prompts × 8 completions ≤ 32 tokens).
            let (g, len) = if which.starts_with("grpo8") { (8, 32) } else { (4, 64) };
            let c = GrpoConfig {
                args: args(which, 2 * g),
                num_generations: g,
                max_completion_length: len,
                beta: 0.04,
                ..Default::default()
            };
            let rows = kit::data::load_prompts(datasets().join("math_ja/train.jsonl"), false)?.rows;
            let data = kit::train::grpo::prepare(&model, &rows[..8], &c)?;
            let funcs = vec![kit::rewards::builtin("format")?, kit::rewards::builtin("accuracy")?];
            let out = Trainer::new(&model, &adapter, Grpo::new(&model, c.clone(), funcs)?, c.args.clone())
                .with_data(data, vec![])
                .train()?;
            let label = if g == 8 {
                "GRPO: 2 prompts × 8 completions ≤ 32 tokens, β = 0.04"
            } else {
                "GRPO: 2 prompts × 4 completions ≤ 64 tokens, β = 0.04"
            };
            (label.to_string(), out)
        }
    };
    let tokens: f64 = out
        .log_history
        .last()
        .and_then(|m| m.get("num_tokens").copied())
        .unwrap_or(0.0);
    let label = match (which.contains("-bf16"), which.contains("-ckpt")) {
        (true, true) => format!("{label}, bf16, gradient_checkpointing"),
        (false, true) => format!("{label}, gradient_checkpointing"),
        (true, false) => format!("{label}, bf16"),
        (false, false) => label,
    };
    println!("{label}");
    println!(
        "RESULT {:.4} {:.0} {:.0}",
        out.train_runtime / STEPS as f64,
        peak_rss_mb(),
        tokens / out.train_runtime
    );
    Ok(())
}

/// (label, s/step, peak RSS MB, tokens/s if known) of one run.
type Measured = (String, f64, f64, Option<f64>);

/// A run's [`Measured`] from a child's output.
fn parse(stdout: &[u8]) -> Option<Measured> {
    let text = String::from_utf8_lossy(stdout);
    let label = text.lines().next()?.to_string();
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Some((label, *v.first()?, *v.get(1)?, v.get(2).copied()))
}

fn run_child(cmd: &mut std::process::Command) -> Option<Measured> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    parse(&out.stdout)
}

#[path = "common/summary.rs"]
mod summary;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--one") {
        return run(args.get(pos + 1).map(String::as_str).unwrap_or("dpo"));
    }
    println!("{}\n", kit::system::cpu_summary());
    println!("SmolLM2-135M (GGUF Q4_1 base), LoRA r=16 on all 7 projections, {STEPS} optimizer steps each, CPU");
    let exe = std::env::current_exe()?;
    let python = kit::hub::kit_home().join("reference/torch-venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/reference/pytorch_steps.py");
    let gguf = match kit::hub::resolve("smollm2-135m")? {
        kit::hub::ModelFiles::Gguf(path) => Some(path),
        _ => None,
    };
    println!(
        "| trainer | kit s/step | kit tokens/s | kit peak RSS MB | TRL f32 s/step | TRL peak RSS MB | kit / TRL time |"
    );
    println!("|---|---|---|---|---|---|---|");
    // TRL's figure per shape (f32, its defaults otherwise), measured right after the shape's first kit row and
    // shared by the shape's other rows.
    let mut trl: std::collections::HashMap<&str, Option<Measured>> = Default::default();
    // `KIT_BENCH_ONLY=grpo8` runs the rows whose mode starts so (and their TRL reference).
    let only = std::env::var("KIT_BENCH_ONLY").ok();
    for which in [
        "dpo",
        "dpo-bf16",
        "dpo-ckpt",
        "dpo-eval",
        "grpo",
        "grpo8",
        "grpo8-bf16",
        "grpo8-ckpt",
        "grpo8-bf16-ckpt",
    ] {
        if only.as_ref().is_some_and(|o| !which.starts_with(o.as_str())) {
            continue;
        }
        let Some((label, step, rss, tps)) = run_child(std::process::Command::new(&exe).args(["--one", which])) else {
            println!("| {which} | failed | | | | | |");
            continue;
        };
        // TRL runs issue 12's shapes: DPO as kit's row, GRPO with 2 prompts × 8 completions ≤ 32 tokens.
        let shape = if which == "dpo-eval" {
            which
        } else {
            which.split('-').next().unwrap_or(which)
        };
        let reference = match (&gguf, shape) {
            (Some(gguf), "dpo" | "grpo8") if python.exists() => trl
                .entry(shape)
                .or_insert_with(|| {
                    let what = if shape == "dpo" { "dpo" } else { "grpo" };
                    let mut cmd = std::process::Command::new(&python);
                    cmd.arg(&script)
                        .args([what, "--steps", &STEPS.to_string(), "--gguf"])
                        .arg(gguf);
                    run_child(&mut cmd)
                })
                .clone(),
            _ => None,
        };
        let (r_step, r_rss, ratio) = reference.map_or((String::new(), String::new(), String::new()), |(_, s, m, _)| {
            (format!("{s:.2}"), format!("{m:.0}"), format!("{:.2}×", step / s))
        });
        println!(
            "| {label} | {step:.2} | {:.0} | {rss:.0} | {r_step} | {r_rss} | {ratio} |",
            tps.unwrap_or(0.0)
        );
        let targets = match shape {
            "dpo" => Some(("≤ 0.35×, ≤ 2.5 GB", "≤ 0.2×")),
            "grpo8" => Some(("≤ 0.4×, ≤ 2.5 GB", "≤ 0.25×")),
            _ => None,
        };
        if let (Some((must, goal)), false) = (targets, r_step.is_empty()) {
            summary::row(
                &format!("{label} (s/step, peak RSS)"),
                &format!("{step:.2} s, {:.1} GB", rss / 1024.0),
                &format!("{r_step} s (TRL f32)"),
                &ratio,
                must,
                goal,
            );
        }
        if which == "dpo-eval" {
            summary::row(
                "DPO evaluation, 8 pairs × 256 tokens (peak RSS)",
                &format!("{:.2} GB", rss / 1024.0),
                "",
                "",
                "≤ 3 GB",
                "",
            );
        }
    }
    if !python.exists() {
        println!(
            "(no {}: run kit/benches/reference/pytorch.sh for the TRL columns)",
            python.display()
        );
    }
    Ok(())
}

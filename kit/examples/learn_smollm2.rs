//! Does training actually learn? SFT, DPO and GRPO on SmolLM2-135M-Instruct (4-bit GGUF base, LoRA r=16) on a CPU,
//! each printing its held-out curve. The figures in the trainers' issue note come from this program.
//!
//! ```bash
//! cargo run --release --example learn_smollm2 -- sft    # held-out loss on sft_ja/dev falls
//! cargo run --release --example learn_smollm2 -- dpo    # held-out rewards/accuracies on pref_ja/dev rise above 0.5
//! cargo run --release --example learn_smollm2 -- grpo   # mean reward (format + correct answer) rises
//! ```
//! Run from the repository root; curves, adapters and SVG plots land in `outputs/learn_smollm2/<trainer>/`.
//! SmolLM2 reads no Japanese, so GRPO uses English arithmetic prompts generated here (seeded, two worked examples
//! in each prompt) rather than `math_ja`, with kit's `format` reward and a correctness reward written as a closure.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kit::prelude::*;

const MODEL: &str = "smollm2-135m";

fn out_dir(trainer: &str) -> PathBuf {
    PathBuf::from("outputs/learn_smollm2").join(trainer)
}

fn lora() -> LoraConfig {
    LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        init_seed: 42,
        ..Default::default()
    }
}

fn args(trainer: &str, lr: f64, batch: usize, steps: usize, eval_steps: usize) -> TrainingArguments {
    TrainingArguments {
        output_dir: out_dir(trainer),
        learning_rate: lr,
        per_device_train_batch_size: batch,
        per_device_eval_batch_size: 8,
        max_steps: Some(steps),
        warmup_ratio: 0.1,
        logging_steps: 5,
        eval_steps: Some(eval_steps),
        eval_on_start: true,
        seed: 42,
        ..Default::default()
    }
}

/// `n` English addition/subtraction prompts with their answers, as prompt-only JSONL (the `answer` column reaches
/// the accuracy reward).
fn arithmetic_prompts(path: &Path, n: usize, seed: u64) -> anyhow::Result<()> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut s = String::new();
    for _ in 0..n {
        let (a, b) = (next(20) + 1, next(20) + 1);
        let (q, ans) = if next(2) == 0 {
            (format!("{a} + {b}"), (a + b) as i64)
        } else {
            (
                format!("{} - {}", a.max(b), a.min(b)),
                a.max(b) as i64 - a.min(b) as i64,
            )
        };
        let prompt = format!(
            "Reply with one line, 'Answer: <number>'.\nQ: What is 2 + 3?\nAnswer: 5\nQ: What is 9 - 4?\nAnswer: 5\nQ: What is {q}?"
        );
        writeln!(s, "{}", serde_json::json!({ "prompt": prompt, "answer": ans }))?;
    }
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(path, s)?;
    Ok(())
}

/// 1 when the last integer on the completion's first line is the row's `answer` ("7 + 12 = 19", "Answer: 19").
fn first_line_answer_reward() -> Box<dyn RewardFunction> {
    reward_fn("correct", |_, completion, cols| {
        let line = completion.trim_start().lines().next().unwrap_or("");
        let last = line
            .split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .filter_map(|w| w.parse::<i64>().ok())
            .next_back();
        (last.is_some() && last == cols.get("answer").and_then(|v| v.as_i64())) as i32 as f32
    })
}

fn print_curve(out: &TrainOutput, keys: &[&str]) {
    for key in keys {
        let pts: Vec<String> = out
            .series(key)
            .iter()
            .map(|(step, v)| format!("{step:.0}:{v:.3}"))
            .collect();
        println!("{key:<28} {}", pts.join("  "));
    }
    println!(
        "train_runtime {:.0} s over {} steps",
        out.train_runtime, out.global_step
    );
}

fn main() -> anyhow::Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "dpo".into());
    let mut model = Model::load(MODEL, &LoadOptions::default())?;
    let adapter = model.attach_lora(&lora())?;
    println!("{}", adapter.summary(&model.decoder));
    match which.as_str() {
        "sft" => {
            let cfg = SftConfig {
                args: args("sft", 2e-4, 4, 40, 10),
                max_length: Some(256),
                ..Default::default()
            };
            let out = train_sft(&model, &adapter, "datasets/sft_ja", None, &cfg)?;
            print_curve(&out, &["loss", "eval_loss", "eval_mean_token_accuracy"]);
        }
        "dpo" => {
            let cfg = DpoConfig {
                args: args("dpo", 5e-4, 4, 50, 10),
                beta: 0.1,
                max_length: Some(256),
                ..Default::default()
            };
            let out = train_dpo(&model, &adapter, "datasets/pref_ja", None, &cfg)?;
            print_curve(
                &out,
                &["loss", "eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"],
            );
        }
        "grpo" => {
            let dir = out_dir("grpo");
            let (train, eval) = (dir.join("prompts_train.jsonl"), dir.join("prompts_eval.jsonl"));
            arithmetic_prompts(&train, 200, 1)?;
            arithmetic_prompts(&eval, 8, 2)?;
            // 2 prompts × 8 completions per step: groups of 8 give steadier advantages than 4.
            let cfg = GrpoConfig {
                args: TrainingArguments {
                    per_device_eval_batch_size: 16,
                    ..args("grpo", 1e-4, 16, 40, 20)
                },
                num_generations: 8,
                max_completion_length: 16,
                beta: 0.04,
                chat: true,
                ..Default::default()
            };
            let out = train_grpo(
                &model,
                &adapter,
                &train,
                Some(&eval),
                vec![format_reward(), first_line_answer_reward()],
                &cfg,
            )?;
            print_curve(
                &out,
                &[
                    "reward",
                    "rewards/format/mean",
                    "rewards/correct/mean",
                    "kl",
                    "eval_reward",
                    "completions/mean_length",
                ],
            );
        }
        other => anyhow::bail!("unknown trainer `{other}` (sft, dpo or grpo)"),
    }
    Ok(())
}

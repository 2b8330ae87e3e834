//! Generation throughput: tokens/s at batch 1 and 8 on SmolLM2-135M (GGUF Q4_1, and dequantized) and Gemma 3 270M
//! (GGUF Q4_K_M), next to native llama.cpp on the same files, run right after kit on each model when
//! `kit/benches/reference/llama_cpp.sh` has built it (`$KIT_HOME/reference/build/bin/llama-bench`). This machine's
//! speed drifts by ±30% over minutes, so only the ratio of two figures measured together means anything. Once
//! `kit/benches/reference/pytorch.sh` has made its venv, HF transformers' `generate` (f32, the same weights) runs
//! on the SmolLM2 prompts too, right after kit (`kit/benches/reference/pytorch_steps.py generate`).
//! Run on an idle machine: `cargo bench -p kit --bench generate`. Prints tables; not a test. `KIT_BENCH_ONLY=MODEL/BATCH`
//! (e.g. `smollm2-135m/8`) runs kit's side of one row only, for a profiler.
use std::time::Instant;

use kit::prelude::*;

#[path = "common/summary.rs"]
mod summary;

/// New tokens per row: llama-bench's `-n 64`, so that both sides decode the same number of tokens.
const NEW_TOKENS: usize = 64;

struct Row {
    model: &'static str,
    batch: usize,
    decode: f64,
    /// llama.cpp's tokens/s on the same GGUF, measured just after (batch-1 GGUF rows, when it is built).
    reference: Option<f64>,
    /// HF transformers' greedy `generate` decode tokens/s at the same batch (SmolLM2 GGUF rows, when the venv exists).
    hf: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let cpu = kit::system::cpu_summary();
    println!("{cpu}\n");
    println!("| model | weights | batch | prompt tokens | prefill s | new tokens | decode tokens/s | total tokens/s |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = vec![];
    let only = std::env::var("KIT_BENCH_ONLY").ok();
    for (model_name, weights, dequantize) in [
        ("smollm2-135m", "GGUF Q4_1", false),
        ("gemma3-270m", "GGUF Q4_K_M", false),
        ("smollm2-135m", "dense f32", true),
    ] {
        let files = kit::hub::resolve(model_name)?;
        let model = Model::load(
            model_name,
            &LoadOptions {
                dequantize,
                ..Default::default()
            },
        )?;
        for batch in [1usize, 8] {
            if only
                .as_ref()
                .is_some_and(|o| *o != format!("{model_name}/{batch}") || dequantize)
            {
                continue;
            }
            let ids: Vec<Vec<u32>> = (0..batch)
                .map(|i| {
                    model.prompt_ids(
                        &format!("Once upon a time, in a village number {i}, there lived"),
                        false,
                    )
                })
                .collect::<kit::Result<_>>()?;
            let cfg = GenerationConfig {
                eos_token_ids: Some(vec![]),
                ..GenerationConfig::greedy(NEW_TOKENS)
            };
            // Warm-up (a full run), then medians of 3: prefill alone (1 new token) and the full run.
            let prefill_only = GenerationConfig {
                max_new_tokens: 1,
                ..cfg.clone()
            };
            model.generate_ids(&ids, &cfg, &mut |_| {})?;
            let prefill = median_s(|| model.generate_ids(&ids, &prefill_only, &mut |_| {}).map(drop))?;
            let mut n = 0;
            let total = median_s(|| {
                let out = model.generate_ids(&ids, &cfg, &mut |_| {})?;
                n = out.iter().map(|g| g.token_ids.len()).sum();
                Ok(())
            })?;
            let decode = (n - batch) as f64 / (total - prefill).max(1e-9);
            println!(
                "| {model_name} | {weights} | {batch} | {} | {prefill:.3} | {n} | {decode:.1} | {:.1} |",
                ids[0].len(),
                n as f64 / total
            );
            if only.is_some() {
                continue;
            }
            let reference = match (&files, batch, dequantize) {
                (kit::hub::ModelFiles::Gguf(path), 1, false) => llama_cpp_decode(path),
                _ => None,
            };
            let hf = match (&files, model_name, dequantize) {
                (kit::hub::ModelFiles::Gguf(path), "smollm2-135m", false) => hf_decode(path, batch),
                _ => None,
            };
            rows.push(Row {
                model: model_name,
                batch,
                decode,
                reference,
                hf,
            });
        }
    }
    print_reference(&rows)
}

/// Median wall time of 3 runs of `f`, in seconds.
fn median_s(mut f: impl FnMut() -> kit::Result<()>) -> kit::Result<f64> {
    let mut t = vec![];
    for _ in 0..3 {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[1])
}

/// kit against native llama.cpp (`llama-bench -n 64`, median of 5) on the same GGUF, batch 1.
fn print_reference(rows: &[Row]) -> anyhow::Result<()> {
    if rows.iter().all(|r| r.reference.is_none() && r.hf.is_none()) {
        println!(
            "\n(no {}: run kit/benches/reference/llama_cpp.sh for the llama.cpp column, kit/benches/reference/pytorch.sh for HF generate)",
            llama_bench().display()
        );
        return Ok(());
    }
    println!("\nGreedy decode, kit vs native llama.cpp and HF generate (f32), each measured right after kit:");
    println!(
        "| model | batch | kit tokens/s | llama.cpp tokens/s | kit / llama.cpp | HF generate tokens/s | kit / HF |"
    );
    println!("|---|---|---|---|---|---|---|");
    let fmt = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.1}"));
    for r in rows {
        if r.reference.is_some() || r.hf.is_some() {
            let (model, batch, kit) = (r.model, r.batch, r.decode);
            let ratio = |x: Option<f64>| x.map_or(String::new(), |x| format!("{:.2}×", kit / x));
            println!(
                "| {model} | {batch} | {kit:.1} | {} | {} | {} | {} |",
                fmt(r.reference),
                ratio(r.reference),
                fmt(r.hf),
                ratio(r.hf)
            );
            // Issue 12's rows: batch 1 against llama.cpp, SmolLM2's batch 8 against HF generate.
            let (against, name, must, goal) = match (model, batch) {
                ("smollm2-135m", 1) => (r.reference, "native llama.cpp", "≥ 0.75×", "≥ 1.0×"),
                ("smollm2-135m", 8) => (r.hf, "HF generate", "≥ 4×", "≥ 6×"),
                ("gemma3-270m", 1) => (r.reference, "native llama.cpp", "≥ 0.65×", "≥ 1.0×"),
                _ => (None, "", "", ""),
            };
            if let Some(x) = against {
                summary::row(
                    &format!("greedy decode, {model} GGUF, batch {batch} (tokens/s)"),
                    &format!("{kit:.1}"),
                    &format!("{x:.1} ({name})"),
                    &format!("{:.2}×", kit / x),
                    must,
                    goal,
                );
            }
        }
    }
    Ok(())
}

/// HF `generate`'s decode tokens/s on the GGUF's weights (f32) at `batch` rows; `None` without the venv.
fn hf_decode(gguf: &std::path::Path, batch: usize) -> Option<f64> {
    let python = kit::hub::kit_home().join("reference/torch-venv/bin/python");
    if !python.exists() {
        return None;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/pytorch_steps.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["generate", "--batch", &batch.to_string(), "--gguf"])
        .arg(gguf)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("RESULT "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn llama_bench() -> std::path::PathBuf {
    kit::hub::kit_home().join("reference/build/bin/llama-bench")
}

/// llama.cpp's decode tokens/s on `gguf` with as many threads as kit uses; `None` when it is not built or fails.
fn llama_cpp_decode(gguf: &std::path::Path) -> Option<f64> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    let out = std::process::Command::new(llama_bench())
        .arg("-m")
        .arg(gguf)
        .args([
            "-p",
            "0",
            "-n",
            &NEW_TOKENS.to_string(),
            "-r",
            "5",
            "-t",
            &threads,
            "-o",
            "csv",
        ])
        .output()
        .ok()?;
    // CSV with a header; the column is `avg_ts` (mean tokens/s over the repetitions).
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').map(|h| h.trim_matches('"')).collect();
    let col = header.iter().position(|h| *h == "avg_ts")?;
    lines.last()?.split(',').nth(col)?.trim_matches('"').parse().ok()
}

//! Generation throughput: tokens/s at batch 1 and 8 on SmolLM2-135M (GGUF Q4_1, and dequantized) and Gemma 3 270M
//! (GGUF Q4_K_M), next to native llama.cpp on the same files when `kit/benches/reference/llama_cpp.sh` has measured
//! it on this machine (it writes `$KIT_HOME/reference/decode.tsv`; run it just before, on an idle machine).
//! Run: `cargo bench -p kit --bench generate`. Prints tables; not a test.
use std::time::Instant;

use kit::prelude::*;

/// New tokens per row: llama-bench's `-n 64`, so that both sides decode the same number of tokens.
const NEW_TOKENS: usize = 64;

struct Row {
    model: &'static str,
    weights: &'static str,
    batch: usize,
    decode: f64,
}

fn main() -> anyhow::Result<()> {
    let cpu = kit::system::cpu_summary();
    println!("{cpu}\n");
    println!("| model | weights | batch | prompt tokens | prefill s | new tokens | decode tokens/s | total tokens/s |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = vec![];
    for (model_name, weights, dequantize) in [
        ("smollm2-135m", "GGUF Q4_1 (as Q8_0)", false),
        ("gemma3-270m", "GGUF Q4_K_M", false),
        ("smollm2-135m", "dense f32", true),
    ] {
        let model = Model::load(
            model_name,
            &LoadOptions {
                dequantize,
                ..Default::default()
            },
        )?;
        for batch in [1usize, 8] {
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
            // Warm-up, then measure prefill alone (1 new token) and the full run.
            let prefill_only = GenerationConfig {
                max_new_tokens: 1,
                ..cfg.clone()
            };
            model.generate_ids(&ids, &prefill_only, &mut |_| {})?;
            let t0 = Instant::now();
            model.generate_ids(&ids, &prefill_only, &mut |_| {})?;
            let prefill = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let out = model.generate_ids(&ids, &cfg, &mut |_| {})?;
            let total = t0.elapsed().as_secs_f64();
            let n: usize = out.iter().map(|g| g.token_ids.len()).sum();
            let decode = (n - batch) as f64 / (total - prefill).max(1e-9);
            println!(
                "| {model_name} | {weights} | {batch} | {} | {prefill:.3} | {n} | {decode:.1} | {:.1} |",
                ids[0].len(),
                n as f64 / total
            );
            rows.push(Row {
                model: model_name,
                weights,
                batch,
                decode,
            });
        }
    }
    print_reference(&rows)
}

/// kit against native llama.cpp (`llama-bench -n 64`) on the same GGUF, batch 1, where the reference was measured.
fn print_reference(rows: &[Row]) -> anyhow::Result<()> {
    let path = kit::hub::kit_home().join("reference/decode.tsv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!(
            "\n(no {}: run kit/benches/reference/llama_cpp.sh for the llama.cpp column)",
            path.display()
        );
        return Ok(());
    };
    println!("\nGreedy decode vs native llama.cpp ({}):", path.display());
    println!("| model | batch | kit tokens/s | llama.cpp tokens/s | kit / llama.cpp |");
    println!("|---|---|---|---|---|");
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [model, batch, tps] = f[..] else { continue };
        let (Ok(batch), Ok(reference)) = (batch.parse::<usize>(), tps.parse::<f64>()) else {
            continue;
        };
        if let Some(r) = rows
            .iter()
            .find(|r| r.model == model && r.batch == batch && r.weights.starts_with("GGUF"))
        {
            println!(
                "| {model} | {batch} | {:.1} | {reference:.1} | {:.2}× |",
                r.decode,
                r.decode / reference
            );
        }
    }
    Ok(())
}

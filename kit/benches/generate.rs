//! Generation throughput on SmolLM2-135M (GGUF Q4_1): tokens/s at batch 1 and 8, quantized and dequantized.
//! Run: `cargo bench -p kit --bench generate`. Prints a table; not a test.
use std::time::Instant;

use kit::prelude::*;

fn main() -> anyhow::Result<()> {
    let new_tokens = 32;
    println!("| weights | batch | prompt tokens | prefill s | new tokens | decode tokens/s | total tokens/s |");
    println!("|---|---|---|---|---|---|---|");
    for dequantize in [false, true] {
        let model = Model::load(
            "smollm2-135m",
            &LoadOptions {
                dequantize,
                ..Default::default()
            },
        )?;
        for batch in [1usize, 8] {
            let prompts: Vec<String> = (0..batch)
                .map(|i| format!("Once upon a time, in a village number {i}, there lived"))
                .collect();
            let ids: Vec<Vec<u32>> = prompts
                .iter()
                .map(|p| model.prompt_ids(p, false))
                .collect::<kit::Result<_>>()?;
            let cfg = GenerationConfig {
                eos_token_ids: Some(vec![]),
                ..GenerationConfig::greedy(new_tokens)
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
            let decode_rate = (n - batch) as f64 / (total - prefill).max(1e-9);
            println!(
                "| {} | {batch} | {} | {prefill:.3} | {n} | {decode_rate:.1} | {:.1} |",
                if dequantize { "dense f32" } else { "GGUF Q4_1" },
                ids[0].len(),
                n as f64 / total
            );
        }
    }
    Ok(())
}

//! The scoring pass of a GRPO step (forward + backward of the completions' log-probs, LoRA r = 16 on Gemma 3 270M,
//! 4-bit base) on one generation batch: 4 prompts of 55 tokens × 8 completions of 12–41 tokens. Three layouts of
//! the same batch, side by side in one run: each prompt once with its 8 completions after it (`logps::token_scores`
//! groups sequences that share a prompt), every sequence packed alone (what it did before: the same batch with
//! one prompt token made distinct per sequence), and the right-padded batch (`token_scores_padded`).
//! Run: `cargo bench -p kit --bench grouped_scoring` (median of 3 passes each).
use std::time::Instant;

use kit::data::tokenize::Tokenized;
use kit::logps::{collate, token_scores_at, token_scores_padded};
use kit::prelude::*;

const PROMPTS: usize = 4;
const G: usize = 8;
const PROMPT_LEN: usize = 55;
const RUNS: usize = 3;

/// The batch; `distinct` gives every sequence its own prompt (one token changed), so nothing is shared.
fn batch(distinct: bool) -> Vec<Tokenized> {
    let mut rows = vec![];
    for p in 0..PROMPTS {
        for i in 0..G {
            let mut ids: Vec<u32> = (0..PROMPT_LEN).map(|j| 1000 + (p * 97 + j * 13) as u32).collect();
            if distinct {
                ids[1] = 5000 + (p * G + i) as u32;
            }
            let completion = 12 + (i * 7 + p * 3) % 30;
            ids.extend((0..completion).map(|j| 2000 + (i * 31 + j * 7) as u32));
            let mut mask = vec![false; PROMPT_LEN];
            mask.extend(vec![true; completion]);
            rows.push(Tokenized {
                ids,
                completion_mask: mask,
            });
        }
    }
    rows
}

fn main() -> anyhow::Result<()> {
    let mut model = Model::load(
        "gemma3-270m",
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;
    let adapter = model.attach_lora(&LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        init_seed: 42,
        ..Default::default()
    })?;
    println!("{} threads", candle_core::utils::get_num_threads());
    let mut rows_out = vec![];
    for (name, distinct, padded) in [
        ("prompt once per group", false, false),
        ("each sequence packed alone", true, false),
        ("right-padded batch", false, true),
    ] {
        let rows = batch(distinct);
        let refs: Vec<&Tokenized> = rows.iter().collect();
        let b = collate(&refs, 0, &candle_core::Device::Cpu)?;
        let tokens = match (distinct, padded) {
            (_, true) => b.ids.elem_count(),
            (true, false) => rows.iter().map(|r| r.ids.len()).sum(),
            (false, false) => {
                PROMPTS * (PROMPT_LEN - 1) + rows.iter().map(|r| r.ids.len() - PROMPT_LEN + 1).sum::<usize>()
            }
        };
        let mut times = vec![];
        for _ in 0..RUNS {
            let _training = adapter.training_scope();
            let t = Instant::now();
            let s = if padded {
                token_scores_padded(&model.decoder, &b, 1.0)?
            } else {
                token_scores_at(&model.decoder, &b, 1.0)?
            };
            let _grads = (&s.logps * &b.mask)?.sum_all()?.backward()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        rows_out.push((name, tokens, times[RUNS / 2]));
    }
    let padded = rows_out.last().map_or(1.0, |r| r.2);
    println!("| layout | tokens through the layers | fwd + bwd (s, median of {RUNS}) | time / padded |");
    println!("|---|---|---|---|");
    for (name, tokens, secs) in rows_out {
        println!("| {name} | {tokens} | {secs:.2} | {:.2} |", secs / padded);
    }
    Ok(())
}

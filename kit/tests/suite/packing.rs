//! Packed scoring against the padded batch: sequences that share a prompt (GRPO's G completions, DPO's chosen and
//! rejected) run their prompt once, each completion attending to it and to itself. The padded forward is the
//! oracle (`decoder_parity` checks it against transformers): the same log-probs and the same LoRA gradients,
//! on models with and without a sliding window shorter than the prompts.
use crate::common;

use candle_core::Tensor;
use kit::data::tokenize::Tokenized;
use kit::logps::{collate, token_scores_at, token_scores_padded};

/// Three prompts with 3, 1 and 2 completions of unequal lengths, and one sequence scored from its second token.
fn batch_rows() -> Vec<Tokenized> {
    let prompts: [&[u32]; 3] = [&[1, 10, 11, 12, 13, 14, 15], &[1, 20, 21], &[1, 30, 31, 32, 33]];
    let completions: [(usize, &[u32]); 6] = [
        (0, &[40, 41, 42, 2]),
        (0, &[43, 2]),
        (0, &[44, 45, 46, 47, 48, 49, 2]),
        (1, &[50, 51, 2]),
        (2, &[60, 61, 62, 63, 2]),
        (2, &[64]),
    ];
    let mut rows: Vec<Tokenized> = completions
        .iter()
        .map(|&(p, c)| Tokenized {
            ids: [prompts[p], c].concat(),
            completion_mask: [vec![false; prompts[p].len()], vec![true; c.len()]].concat(),
        })
        .collect();
    rows.push(Tokenized {
        ids: vec![1, 70, 71, 72, 73, 74],
        completion_mask: vec![false, true, true, true, true, true],
    });
    rows
}

#[test]
fn shared_prompt_scores_and_gradients_equal_the_padded_batch() {
    let rows = batch_rows();
    let refs: Vec<&Tokenized> = rows.iter().collect();
    for name in ["llama", "gemma3", "qwen2"] {
        let mut model = common::tiny_model(name);
        let adapter = model
            .attach_lora(&kit::lora::LoraConfig {
                r: 4,
                lora_alpha: 8.0,
                init_seed: 1,
                ..Default::default()
            })
            .unwrap();
        common::fill_lora_b(&adapter);
        let batch = collate(&refs, 0, &candle_core::Device::Cpu).unwrap();
        // A weight per scored token, so that the gradient depends on every position.
        let (b, t1) = batch.mask.dims2().unwrap();
        let weights: Vec<f32> = (0..b * t1).map(|i| 1.0 + (i % 5) as f32 * 0.3).collect();
        let weights = Tensor::from_vec(weights, (b, t1), &candle_core::Device::Cpu).unwrap();
        let run = |packed: bool| {
            let _training = adapter.scoped(kit::lora::AdapterMode {
                training: true,
                exact: true,
                ..adapter.mode()
            });
            let s = if packed {
                token_scores_at(&model.decoder, &batch, 0.7).unwrap()
            } else {
                token_scores_padded(&model.decoder, &batch, 0.7).unwrap()
            };
            let loss = (&s.logps * &batch.mask)
                .unwrap()
                .mul(&weights)
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let g: Vec<Tensor> = adapter
                .params()
                .iter()
                .flat_map(|(_, a, b)| [grads.get(a).unwrap().clone(), grads.get(b).unwrap().clone()])
                .collect();
            ((&s.logps * &batch.mask).unwrap(), g)
        };
        let ((packed, g_packed), (padded, g_padded)) = (run(true), run(false));
        let diff = common::max_abs(&(&packed - &padded).unwrap());
        assert!(
            diff <= 1e-4,
            "{name}: log-probs differ by {diff}\npacked {packed}\npadded {padded}"
        );
        assert!(common::max_abs(&padded) > 0.1, "{name}: nothing was scored");
        let worst = g_packed
            .iter()
            .zip(&g_padded)
            .map(|(x, y)| common::rel_diff(x, y))
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{name}: LoRA gradients differ (relative) by {worst}");
    }
}

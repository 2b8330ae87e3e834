//! Generation behaviour on the real SmolLM2-135M: batching, stopping, seeding, log-probs.
use crate::common;

use candle_core::{IndexOp, Tensor};
use kit::generate::{FinishReason, GenerationConfig};
use kit::model::{LoadOptions, Model};
use kit::sampling::log_softmax;

fn model() -> Model {
    common::real_model("smollm2-135m");
    Model::load("smollm2-135m", &LoadOptions::default()).unwrap()
}

const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):",
    "My favourite food is sushi because it is fresh and",
];

#[test]
fn batched_generation_equals_one_by_one() {
    let m = model();
    let cfg = GenerationConfig::greedy(12);
    let batched = m.generate(&PROMPTS, &cfg).unwrap();
    for (p, b) in PROMPTS.iter().zip(&batched) {
        let single = m.generate(&[*p], &cfg).unwrap().remove(0);
        assert_eq!(single.token_ids, b.token_ids, "prompt {p:?}");
        assert_eq!(single.text, b.text);
        for (x, y) in single.logprobs.iter().zip(&b.logprobs) {
            assert!((x - y).abs() < 2e-3, "{p:?}: logprob {x} vs {y}");
        }
    }
}

#[test]
fn a_repeated_prompt_is_prefilled_once_and_each_copy_decodes_as_alone() {
    // GRPO asks for G completions of each prompt: the batch holds each prompt G times, prefilled once.
    let m = model();
    let cfg = GenerationConfig::greedy(10);
    let batch = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0], PROMPTS[1]];
    let batched = m.generate(&batch, &cfg).unwrap();
    for (p, b) in batch.iter().zip(&batched) {
        let single = m.generate(&[*p], &cfg).unwrap().remove(0);
        assert_eq!(single.token_ids, b.token_ids, "prompt {p:?}");
        for (x, y) in single.logprobs.iter().zip(&b.logprobs) {
            assert!((x - y).abs() < 2e-3, "{p:?}: logprob {x} vs {y}");
        }
    }
    // Sampled copies of one prompt draw different completions (the copies are rows of their own, not one row).
    let sampled = m
        .generate(&[PROMPTS[2]; 4], &GenerationConfig::sample(12, 1.0, 7))
        .unwrap();
    assert!(sampled.iter().any(|g| g.token_ids != sampled[0].token_ids));
}

#[test]
fn logprobs_equal_a_training_forward_over_the_full_sequence() {
    // GRPO's old log-probs come from generation; its loss recomputes them with a plain forward. They must agree.
    let m = model();
    for temperature in [1.0, 0.7] {
        let cfg = GenerationConfig::sample(10, temperature, 3);
        let g = m.generate(&["Tell me about cats."], &cfg).unwrap().remove(0);
        let mut all = g.prompt_ids.clone();
        all.extend(&g.token_ids);
        let input = Tensor::new(all.as_slice(), m.device()).unwrap().unsqueeze(0).unwrap();
        let logits = m
            .decoder
            .forward(&input, None, None)
            .unwrap()
            .i(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let p = g.prompt_ids.len();
        for (k, (&tok, &lp)) in g.token_ids.iter().zip(&g.logprobs).enumerate() {
            let want = log_softmax(&logits[p + k - 1], temperature)[tok as usize];
            assert!(
                (want as f32 - lp).abs() < 2e-3,
                "t={temperature} token {k}: {lp} vs {want}"
            );
        }
    }
}

#[test]
fn stop_strings_cut_the_text() {
    let m = model();
    let free = m
        .generate(&["The capital of France is"], &GenerationConfig::greedy(24))
        .unwrap()
        .remove(0);
    // Stop at the first word of the free continuation after the first one.
    let word = free.text.split_whitespace().nth(1).expect("a few words").to_string();
    let cut = free.text.find(&word).unwrap();
    let cfg = GenerationConfig {
        stop_strings: vec![word.clone()],
        ..GenerationConfig::greedy(24)
    };
    let stopped = m.generate(&["The capital of France is"], &cfg).unwrap().remove(0);
    assert_eq!(stopped.finish_reason, FinishReason::StopString);
    assert_eq!(stopped.text, free.text[..cut], "stop string {word:?}");
    assert_eq!(free.finish_reason, FinishReason::Length);
}

#[test]
fn chat_answers_end_at_the_end_of_turn_token() {
    let m = model();
    let g = m
        .generate(&["What is 2 + 2?"], &GenerationConfig::greedy(60).with_chat(true))
        .unwrap()
        .remove(0);
    assert_eq!(g.finish_reason, FinishReason::Eos, "{:?}", g.text);
    let eos = m.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert_eq!(*g.token_ids.last().unwrap(), eos);
    assert!(!g.text.contains("<|im_end|>") && !g.text.is_empty());
}

#[test]
fn sampling_is_seeded() {
    let m = model();
    let run = |seed| {
        m.generate(&["Once upon a time"], &GenerationConfig::sample(12, 1.0, seed))
            .unwrap()
            .remove(0)
            .token_ids
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

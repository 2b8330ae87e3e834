//! KL to the reference measured on the policy's samples (`kit::train::kl`): the estimate against the exact KL of a
//! tiny model's next-token distributions, and DPO's `eval_kl` and `kl_budget` end to end.
use crate::common;

use candle_core::{Device, Tensor};
use kit::data::{Origin, PreferenceRow, Turns};
use kit::lora::LoraConfig;
use kit::train::dpo::{dpo_trainer_from_rows, DpoConfig, DpoReference};
use kit::train::kl::{sampled_kl, KlReference};
use kit::train::TrainingArguments;

fn lora_cfg() -> LoraConfig {
    LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        init_seed: 3,
        ..Default::default()
    }
}

/// Next-token probabilities after `prompt` (softmax of the last position's logits).
fn next_token_probs(model: &kit::model::Model, prompt: &[u32]) -> Vec<f64> {
    let ids = Tensor::new(prompt, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = model.decoder.forward(&ids, None, None).unwrap().squeeze(0).unwrap();
    let p = candle_nn::ops::softmax_last_dim(&logits)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    p.last().unwrap().iter().map(|&x| x as f64).collect()
}

#[test]
fn sampled_kl_of_one_token_agrees_with_the_exact_kl_within_its_standard_error() {
    let mut model = common::tiny_model("llama");
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    common::fill_lora_b(&adapter);
    // B ten times larger: a KL of about 0.01 nats, well above the estimate's noise.
    for (_, _, b) in adapter.params() {
        b.set(&(b.as_tensor() * 10.0).unwrap()).unwrap();
    }
    let prompt = vec![1u32, 17, 40];
    let p = next_token_probs(&model, &prompt);
    let q = adapter.with_disabled(|| next_token_probs(&model, &prompt));
    // Over one sampled token y ~ p, k3 = q/p − 1 − log(q/p) has mean KL(p ‖ q) exactly; its variance gives the
    // standard error of a mean over n samples.
    let k3 = |i: usize| q[i] / p[i] - 1.0 - (q[i] / p[i]).ln();
    let exact: f64 = (0..p.len()).map(|i| p[i] * (p[i] / q[i]).ln()).sum();
    let second: f64 = (0..p.len()).map(|i| p[i] * k3(i).powi(2)).sum();
    let n = 512;
    let se = ((second - exact * exact) / n as f64).sqrt();
    let prompts = vec![prompt; n];
    let estimate = sampled_kl(&model, &adapter, &prompts, KlReference::Base, 1, 11).unwrap();
    assert!(exact > 1e-3, "the adapter should move the distribution: KL {exact}");
    assert!(
        (estimate - exact).abs() < 4.0 * se,
        "estimate {estimate:.5}, exact {exact:.5}, standard error {se:.5}"
    );
    // Against itself (the adapter's own values as the reference) the KL is 0 exactly, and the adapter keeps them.
    let snapshot = adapter.snapshot().unwrap();
    let same = sampled_kl(&model, &adapter, &prompts[..8], KlReference::Snapshot(&snapshot), 4, 11).unwrap();
    assert_eq!(same, 0.0);
    assert_eq!(next_token_probs(&model, &[1, 17, 40]), p);
}

/// Pairs of the tiny tokenizer's words: the chosen answer starts with t40, the rejected one with t90.
fn rows(n: u32) -> Vec<(Origin, PreferenceRow)> {
    (0..n)
        .map(|i| {
            let at = Origin {
                path: "pairs.jsonl".into(),
                line: i as usize + 1,
            };
            let row = PreferenceRow {
                prompt: Turns::Text(format!("t1 t{} t{}", 10 + i, 20 + i)),
                chosen: Turns::Text(format!(" t40 t{} t2", 50 + i)),
                rejected: Turns::Text(format!(" t90 t{} t2", 60 + i)),
                margin: None,
            };
            (at, row)
        })
        .collect()
}

fn dpo_cfg(name: &str, kl: Option<usize>, budget: Option<f64>) -> DpoConfig {
    DpoConfig {
        args: TrainingArguments {
            output_dir: common::temp_dir(name),
            learning_rate: 2e-2,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 4,
            max_steps: Some(6),
            logging_steps: 1,
            eval_steps: Some(1),
            eval_on_start: true,
            disable_tqdm: true,
            seed: 5,
            ..Default::default()
        },
        beta: 0.1,
        max_length: None,
        reference: DpoReference::Initial,
        eval_kl_max_new_tokens: kl,
        kl_budget: budget,
        ..Default::default()
    }
}

#[test]
fn dpo_eval_kl_starts_at_zero_against_the_initial_adapter_and_a_budget_ends_the_run() {
    let mut model = common::tiny_model("llama");
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    // An adapter that already differs from the base (as after SFT): the reference is it, not the base.
    common::fill_lora_b(&adapter);
    let start = adapter.snapshot().unwrap();
    let (train, dev) = (rows(8), rows(12)[8..].to_vec());
    let out = dpo_trainer_from_rows(&model, &adapter, &train, &dev, &dpo_cfg("dpo-kl", Some(4), None))
        .unwrap()
        .train()
        .unwrap();
    let kl = out.series("eval_kl");
    assert_eq!(kl.len(), 7, "{kl:?}");
    assert_eq!(kl[0], (0.0, 0.0), "the policy is its reference before the first step");
    assert!(kl[1..].iter().all(|&(_, v)| v > 0.0), "{kl:?}");
    assert!(kl[6].1 > kl[1].1, "six steps move the policy further than one: {kl:?}");

    // A budget of 1e-9 nats is passed at the first evaluation after an update.
    adapter.restore(&start).unwrap();
    let cfg = dpo_cfg("dpo-kl-budget", Some(4), Some(1e-9));
    let stopped = dpo_trainer_from_rows(&model, &adapter, &train, &dev, &cfg)
        .unwrap()
        .train()
        .unwrap();
    assert_eq!(stopped.global_step, 1);
    assert!(!stopped.interrupted);

    // Without eval_kl there is nothing for a budget to watch: an error that says what to set.
    let err = dpo_trainer_from_rows(&model, &adapter, &train, &dev, &dpo_cfg("dpo-kl-bad", None, Some(0.5)))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("kl_budget") && err.contains("eval_kl_max_new_tokens"),
        "{err}"
    );
    let err = dpo_trainer_from_rows(
        &model,
        &adapter,
        &train,
        &dev,
        &dpo_cfg("dpo-kl-neg", Some(4), Some(-1.0)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("kl_budget must be a positive number"), "{err}");
}

#[test]
fn grpo_kl_against_the_initial_adapter_starts_at_zero_where_the_base_does_not() {
    use kit::rewards::reward_fn;
    use kit::train::grpo::{grpo_trainer_from_rows, GrpoConfig, GrpoReference};
    let mut model = common::tiny_model("llama");
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    // As after SFT: the adapter already moves the model away from the base.
    common::fill_lora_b(&adapter);
    let start = adapter.snapshot().unwrap();
    let rows = common::tiny_prompt_rows(4);
    let run = |reference: GrpoReference| {
        adapter.restore(&start).unwrap();
        let cfg = GrpoConfig {
            args: TrainingArguments {
                output_dir: common::temp_dir("grpo-reference"),
                learning_rate: 1e-2,
                per_device_train_batch_size: 8,
                max_steps: Some(3),
                logging_steps: 1,
                disable_tqdm: true,
                seed: 5,
                ..Default::default()
            },
            num_generations: 8,
            max_completion_length: 3,
            beta: 0.04,
            reference,
            ..Default::default()
        };
        // Rewards that differ within a group (the first token's id is even or odd), so that every step moves.
        let reward = reward_fn("even_start", |_, c, _| {
            let first = c
                .split_whitespace()
                .next()
                .and_then(|w| w.strip_prefix('t')?.parse::<u32>().ok());
            first.map_or(0.0, |id| (id % 2 == 0) as i32 as f32)
        });
        let out = grpo_trainer_from_rows(&model, &adapter, &rows, &[], vec![reward], &cfg)
            .unwrap()
            .train()
            .unwrap();
        out.series("kl")
    };
    // Step 1 scores the completions before any update: the policy is its starting adapter, so the KL to it is 0
    // exactly; the KL to the bare base is the SFT-like adapter's own distance.
    let initial = run(GrpoReference::Initial);
    assert_eq!(initial[0].1, 0.0, "{initial:?}");
    assert!(initial[1..].iter().all(|&(_, v)| v > 0.0), "{initial:?}");
    let base = run(GrpoReference::Base);
    assert!(base[0].1 > 1e-4, "{base:?}");
}

/// On a quantized model the fast decoding kernels round differently from the exact ones a training pass takes:
/// the reference pass must take the same kernels as the policy's, or a policy equal to its reference shows a KL.
#[test]
fn grpo_kl_to_the_initial_adapter_is_zero_at_step_one_on_a_quantized_model() {
    use kit::data::PromptRow;
    use kit::rewards::reward_fn;
    use kit::train::grpo::{grpo_trainer_from_rows, GrpoConfig, GrpoReference};
    common::real_model("smollm2-135m");
    let mut model = kit::model::Model::load("smollm2-135m", &Default::default()).unwrap();
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    common::fill_lora_b(&adapter);
    let at = Origin {
        path: "prompts.jsonl".into(),
        line: 1,
    };
    let row = PromptRow {
        prompt: Turns::Text("The capital of France is".into()),
        columns: Default::default(),
    };
    let cfg = GrpoConfig {
        args: TrainingArguments {
            output_dir: common::temp_dir("grpo-reference-quantized"),
            per_device_train_batch_size: 4,
            max_steps: Some(1),
            logging_steps: 1,
            disable_tqdm: true,
            ..Default::default()
        },
        num_generations: 4,
        max_completion_length: 4,
        beta: 0.04,
        reference: GrpoReference::Initial,
        ..Default::default()
    };
    let reward = reward_fn("length", |_, c, _| c.len() as f32);
    let out = grpo_trainer_from_rows(&model, &adapter, &[(at, row)], &[], vec![reward], &cfg)
        .unwrap()
        .train()
        .unwrap();
    assert_eq!(out.series("kl"), vec![(1.0, 0.0)]);
}

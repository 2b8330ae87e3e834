//! The GRPO and reward-model trainers end to end on a tiny fixture model: GRPO samples, scores and logs TRL's
//! metrics and raises a learnable reward; a reward model learns a preference, reads the `margin` column, and its
//! saved adapter + head score exactly as the trained one.
use crate::common;

use std::path::Path;

use kit::lora::{self, LoraConfig};
use kit::rewards::reward_fn;
use kit::train::grpo::{Grpo, GrpoConfig, GrpoLossType, PromptExample};
use kit::train::reward_model::{reward_loss, RewardConfig, RewardHead, RewardModel};
use kit::train::{Objective, StepInfo, Trainer, TrainingArguments};

fn lora_cfg() -> LoraConfig {
    LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        init_seed: 3,
        ..Default::default()
    }
}

/// The id of the first token of a tiny-tokenizer completion ("t17 t4 ..." → 17).
fn first_id(completion: &str) -> Option<u32> {
    completion.split_whitespace().next()?.strip_prefix('t')?.parse().ok()
}

/// Tokens the GRPO test rewards as a first completion token.
const GOOD: std::ops::Range<u32> = 32..64;

/// The policy's probability that a completion of `prompt` starts with a `GOOD` token (exact, from the logits).
fn good_start_mass(model: &kit::model::Model, prompt: &[u32]) -> f32 {
    let ids = candle_core::Tensor::new(prompt, &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.decoder.forward(&ids, None, None).unwrap().squeeze(0).unwrap();
    let p = candle_nn::ops::softmax_last_dim(&logits)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    GOOD.map(|t| p[prompt.len() - 1][t as usize]).sum()
}

#[test]
fn grpo_samples_scores_logs_trl_metrics_and_improves_its_objective() {
    let dir = common::temp_dir("grpo-e2e");
    let mut model = common::tiny_model("llama");
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    // Four prompts, all in one step's batch (4 prompts × 8 completions).
    let prompts: Vec<PromptExample> = (0..4u32)
        .map(|i| PromptExample {
            ids: vec![1, 10 + i, 20 + i],
            text: format!("t1 t{} t{}", 10 + i, 20 + i),
            columns: Default::default(),
        })
        .collect();
    // One eighth of the vocabulary is "good" as a first token, so most groups of 8 see both outcomes.
    let good = reward_fn("good_start", |_, c, _| {
        first_id(c).map_or(0.0, |id| GOOD.contains(&id) as i32 as f32)
    });
    let cfg = GrpoConfig {
        args: TrainingArguments {
            output_dir: dir.clone(),
            learning_rate: 1e-2,
            per_device_train_batch_size: 32,
            max_steps: Some(2),
            logging_steps: 1,
            warmup_steps: 0,
            disable_tqdm: true,
            seed: 5,
            ..Default::default()
        },
        num_generations: 8,
        max_completion_length: 3,
        beta: 0.04,
        // Every rollout is used for two steps: the second step scores it under the updated policy.
        num_iterations: 2,
        // Per-sequence means (DAPO, the default, weights advantages by completion length).
        loss_type: GrpoLossType::Grpo,
        ..Default::default()
    };
    let good_mass = |model: &kit::model::Model| -> f32 {
        prompts.iter().map(|p| good_start_mass(model, &p.ids)).sum::<f32>() / prompts.len() as f32
    };
    let grpo = Grpo::new(&model, cfg.clone(), vec![good]).unwrap();
    let out = Trainer::new(&model, &adapter, grpo, cfg.args.clone())
        .with_data(prompts.clone(), vec![])
        .train()
        .unwrap();

    let line = out.log_history.iter().find(|m| m.contains_key("loss")).unwrap();
    for k in [
        "loss",
        "grad_norm",
        "learning_rate",
        "num_tokens",
        "reward",
        "reward_std",
        "rewards/good_start/mean",
        "rewards/good_start/std",
        "frac_reward_zero_std",
        "kl",
        "entropy",
        "clip_ratio/low_mean",
        "clip_ratio/low_min",
        "clip_ratio/high_mean",
        "clip_ratio/high_max",
        "clip_ratio/region_mean",
        "completions/mean_length",
        "completions/min_length",
        "completions/max_length",
        "completions/clipped_ratio",
    ] {
        assert!(line.contains_key(k), "missing {k} in {line:?}");
    }
    for m in out.log_history.iter().filter(|m| m.contains_key("loss")) {
        assert!(m["completions/max_length"] <= 3.0, "{m:?}");
        assert!(m["completions/min_length"] >= 1.0, "{m:?}");
    }
    // The adapter starts as the reference (B = 0): no KL at the first step, some once it has moved.
    let kl = out.series("kl");
    assert!(kl[0].1.abs() < 1e-6, "{kl:?}");
    assert!(kl[1].1 > 1e-9, "{kl:?}");
    // On the fresh rollout π = π_old = π_ref, so the `grpo` loss is −mean(A) = 0 (advantages are centred per group).
    // Scored again after one update, the same rollout must have a lower loss: the update raised the log-probs of
    // completions with positive advantage relative to the others (a sign error in the loss or its gradient fails
    // here). Only the first update is free of AdamW's momentum from earlier rollouts, hence two steps.
    assert!(
        out.series("frac_reward_zero_std")[0].1 < 1.0,
        "the rollout has no reward spread"
    );
    let loss = out.series("loss");
    let (fresh, reused) = (loss[0].1, loss[1].1);
    assert!(fresh.abs() < 1e-6, "{loss:?}");
    assert!(reused < -1e-3, "{loss:?}");
    assert!(dir.join("adapter_model.safetensors").exists() && dir.join("reward.svg").exists());
    // Measured outside the loss (which any sign would lower): the policy puts more probability on rewarded first
    // tokens. One run's change is noise-sized (the tiny random model's logits are nearly flat; over seeds 1–12 it
    // ranged from −1.1e-3 to +1.2e-3), so the check is on the mean over twelve runs with their own samples.
    let mut deltas = vec![];
    for seed in 1..=12u64 {
        let mut model = common::tiny_model("llama");
        let adapter = model.attach_lora(&lora_cfg()).unwrap();
        let good = reward_fn("good_start", |_, c, _| {
            first_id(c).map_or(0.0, |id| GOOD.contains(&id) as i32 as f32)
        });
        let mut cfg = cfg.clone();
        cfg.args.seed = seed;
        cfg.args.output_dir = common::temp_dir(&format!("grpo-e2e-{seed}"));
        let before = good_mass(&model);
        let grpo = Grpo::new(&model, cfg.clone(), vec![good]).unwrap();
        Trainer::new(&model, &adapter, grpo, cfg.args.clone())
            .with_data(prompts.clone(), vec![])
            .train()
            .unwrap();
        adapter.set_training(false);
        deltas.push(good_mass(&model) - before);
    }
    let mean = deltas.iter().sum::<f32>() / deltas.len() as f32;
    assert!(
        mean > 1e-4,
        "mean change of P(good first token) over 12 runs: {mean:.2e} ({deltas:?})"
    );
}

#[test]
fn grpo_kl_budget_ends_the_run_once_kl_passes_it() {
    let mut model = common::tiny_model("llama");
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    let rows = common::tiny_prompt_rows(4);
    let good = || {
        reward_fn("good_start", |_, c, _| {
            first_id(c).map_or(0.0, |id| GOOD.contains(&id) as i32 as f32)
        })
    };
    let cfg = |budget: Option<f64>, beta: f64| GrpoConfig {
        args: TrainingArguments {
            output_dir: common::temp_dir("grpo-kl-budget"),
            learning_rate: 1e-2,
            per_device_train_batch_size: 8,
            max_steps: Some(6),
            logging_steps: 1,
            disable_tqdm: true,
            seed: 5,
            ..Default::default()
        },
        num_generations: 8,
        max_completion_length: 3,
        beta,
        kl_budget: budget,
        ..Default::default()
    };
    // The first step's KL is 0 (the adapter starts as the reference); a budget of 1e-9 nats is passed at the first
    // step after an update, long before step 6.
    let out =
        kit::train::grpo::grpo_trainer_from_rows(&model, &adapter, &rows, &[], vec![good()], &cfg(Some(1e-9), 0.04))
            .unwrap()
            .train()
            .unwrap();
    let kl = out.series("kl");
    assert!(out.global_step < 6, "{kl:?}");
    assert!(kl.last().unwrap().1 > 1e-9, "{kl:?}");
    assert!(kl[..kl.len() - 1].iter().all(|&(_, v)| v <= 1e-9), "{kl:?}");
    // Without a budget the same run goes on.
    let full = kit::train::grpo::grpo_trainer_from_rows(&model, &adapter, &rows, &[], vec![good()], &cfg(None, 0.04))
        .unwrap()
        .train()
        .unwrap();
    assert_eq!(full.global_step, 6);
    // No KL is measured with beta = 0: a budget then is an error that says so.
    let err =
        kit::train::grpo::grpo_trainer_from_rows(&model, &adapter, &rows, &[], vec![good()], &cfg(Some(0.5), 0.0))
            .err()
            .unwrap()
            .to_string();
    assert!(err.contains("kl_budget") && err.contains("beta"), "{err}");
}

#[test]
fn grpo_dapo_under_gradient_accumulation_equals_one_batch() {
    // TRL samples a step's whole generation batch (per-device batch × accumulation steps) at once, scales rewards
    // over it and divides `dapo`'s loss by its completion tokens: two micro-batches of 2 prompts must then take the
    // same steps as one batch of 4 prompts, with completions of unequal lengths.
    let prompts: Vec<PromptExample> = (0..8u32)
        .map(|i| PromptExample {
            ids: vec![1, 40 + i, 80 + i],
            text: format!("t1 t{} t{}", 40 + i, 80 + i),
            columns: Default::default(),
        })
        .collect();
    let run = |batch: usize, accumulation: usize| -> Vec<kit::train::Metrics> {
        let mut model = common::tiny_model("llama");
        // A bias towards EOS (id 2) ends many completions early, so micro-batches differ in completion tokens.
        let mut bias = vec![0f32; model.config().vocab_size];
        bias[2] = 4.0;
        model.decoder.lm_head.bias = Some(candle_core::Tensor::new(bias, &candle_core::Device::Cpu).unwrap());
        let adapter = lora::attach(&mut model.decoder, &lora_cfg()).unwrap();
        let cfg = GrpoConfig {
            args: TrainingArguments {
                output_dir: common::temp_dir(&format!("grpo-accum-{accumulation}")),
                learning_rate: 1e-2,
                per_device_train_batch_size: batch,
                gradient_accumulation_steps: accumulation,
                max_steps: Some(2),
                logging_steps: 1,
                disable_tqdm: true,
                seed: 11,
                ..Default::default()
            },
            num_generations: 4,
            max_completion_length: 6,
            beta: 0.04,
            scale_rewards: kit::train::grpo::ScaleRewards::Batch,
            loss_type: GrpoLossType::Dapo,
            ..Default::default()
        };
        let odd = reward_fn("odd_start", |_, c, _| first_id(c).map_or(0.0, |id| (id % 2) as f32));
        let grpo = Grpo::new(&model, cfg.clone(), vec![odd]).unwrap();
        let out = Trainer::new(&model, &adapter, grpo, cfg.args.clone())
            .with_data(prompts.clone(), vec![])
            .train()
            .unwrap();
        out.log_history
    };
    let (one, two) = (run(16, 1), run(8, 2));
    assert!(
        one[0]["completions/min_length"] < one[0]["completions/max_length"],
        "completions of equal length test nothing: {:?}",
        one[0]
    );
    // (Token means such as `kl` are means of per-micro-batch means under accumulation, in TRL as here.)
    for (a, b) in one.iter().zip(&two) {
        for k in ["loss", "grad_norm", "reward", "reward_std", "completions/mean_length"] {
            let (x, y) = (a[k], b[k]);
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1e-3),
                "step {}: {k} {x} (batch) vs {y} (accumulated)",
                a["step"]
            );
        }
    }
}

#[test]
fn grpo_step_with_tied_rewards_has_zero_gradients_that_adamw_still_steps_with() {
    // β = 0 and every group's rewards tied: the objective returns the zero loss without a forward pass. Its gradient
    // must be a zero gradient, not none: AdamW then keeps moving the weights with its momentum, as TRL's does.
    let prompts: Vec<PromptExample> = (0..2u32)
        .map(|i| PromptExample {
            ids: vec![1, 10 + i, 20 + i],
            text: format!("t1 t{} t{}", 10 + i, 20 + i),
            columns: Default::default(),
        })
        .collect();
    // Scores the first rollout by its first token, every later one with the same 1.0.
    let run = |steps: usize| -> (Vec<kit::train::Metrics>, Vec<Vec<f32>>) {
        let mut model = common::tiny_model("llama");
        let adapter = model.attach_lora(&lora_cfg()).unwrap();
        let mut calls = 0;
        let reward = reward_fn("first_then_tied", move |_, c, _| {
            calls += 1;
            if calls <= 8 {
                first_id(c).map_or(0.0, |id| GOOD.contains(&id) as i32 as f32)
            } else {
                1.0
            }
        });
        let cfg = GrpoConfig {
            args: TrainingArguments {
                output_dir: common::temp_dir(&format!("grpo-tied-{steps}")),
                learning_rate: 1e-2,
                // A constant rate: the linear schedule's rate would already be 0 at the last step.
                lr_scheduler_type: kit::train::optim::SchedulerType::Constant,
                per_device_train_batch_size: 8,
                max_steps: Some(steps),
                logging_steps: 1,
                disable_tqdm: true,
                seed: 5,
                ..Default::default()
            },
            num_generations: 8,
            max_completion_length: 3,
            ..Default::default()
        };
        let grpo = Grpo::new(&model, cfg.clone(), vec![reward]).unwrap();
        let out = Trainer::new(&model, &adapter, grpo, cfg.args.clone())
            .with_data(prompts.clone(), vec![])
            .train()
            .unwrap();
        let bs = adapter
            .params()
            .iter()
            .map(|(_, _, b)| b.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        (out.log_history, bs)
    };
    let (one, b1) = run(1);
    let (two, b2) = run(2);
    assert!(
        one[0]["frac_reward_zero_std"] < 1.0 && one[0]["grad_norm"] > 0.0,
        "{:?}",
        one[0]
    );
    let tied = two.iter().find(|m| m.get("step") == Some(&2.0)).unwrap();
    assert_eq!(tied["frac_reward_zero_std"], 1.0, "{tied:?}");
    assert_eq!(
        (tied["loss"], tied["grad_norm"], tied["clip_ratio/region_mean"]),
        (0.0, 0.0, 0.0)
    );
    assert!(!tied.contains_key("entropy"), "no forward pass was run: {tied:?}");
    // The second step's update comes from AdamW's first moment alone: B moved on from where step 1 left it.
    let moved = b1
        .iter()
        .flatten()
        .zip(b2.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-4, "B did not move at the tied step: {moved}");
}

/// Preference pairs in the tiny vocabulary: chosen answers use tokens 30–39, rejected ones 60–69.
fn write_pairs(path: &Path, n: usize, offset: usize, margin: bool) {
    let mut s = String::new();
    for i in 0..n {
        let k = i + offset;
        let mut row = serde_json::json!({
            "prompt": format!("t{} t{}", 100 + k % 50, 150 + (k * 7) % 50),
            "chosen": format!(" t{} t{}", 30 + k % 10, 30 + (k * 3) % 10),
            "rejected": format!(" t{} t{}", 60 + k % 10, 60 + (k * 3) % 10),
        });
        if margin {
            row["margin"] = serde_json::json!(0.5 + (k % 3) as f64);
        }
        s.push_str(&row.to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn reward_model_learns_saves_and_scores_what_it_learned() {
    let dir = common::temp_dir("reward-e2e");
    let (train, dev) = (dir.join("train.jsonl"), dir.join("dev.jsonl"));
    write_pairs(&train, 16, 0, true);
    write_pairs(&dev, 8, 16, false);
    let mut model = common::tiny_model("llama");
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    let out_dir = dir.join("out");
    let cfg = RewardConfig {
        args: TrainingArguments {
            output_dir: out_dir.clone(),
            learning_rate: 2e-2,
            per_device_train_batch_size: 4,
            max_steps: Some(24),
            logging_steps: 4,
            eval_steps: Some(12),
            eval_on_start: true,
            disable_tqdm: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut trainer = kit::train::Trainer::from_files(&model, &adapter, cfg.clone(), &train, Some(&dev)).unwrap();

    // The `margin` column reaches the loss: −log σ(r_c − r_r − m) (TRL's RewardTrainer).
    let pairs: Vec<_> = trainer.train_data[..4].iter().collect();
    assert!(pairs.iter().all(|p| p.margin.is_some()));
    let at = StepInfo {
        step: 0,
        micro: 0,
        seed: 0,
        eval: false,
        items_in_step: None,
    };
    let got = trainer
        .objective
        .loss(&model, &adapter, &pairs, at)
        .unwrap()
        .loss
        .to_scalar::<f32>()
        .unwrap();
    let rewards = |seqs: Vec<&kit::data::Tokenized>| {
        let batch = kit::logps::collate(&seqs, 0, model.device()).unwrap();
        trainer.objective.head.rewards(&model, &batch).unwrap()
    };
    let rc = rewards(pairs.iter().map(|p| &p.chosen).collect());
    let rr = rewards(pairs.iter().map(|p| &p.rejected).collect());
    let m: Vec<f32> = pairs.iter().map(|p| p.margin.unwrap()).collect();
    let m = candle_core::Tensor::from_vec(m, 4, model.device()).unwrap();
    let want = reward_loss(&rc, &rr, Some(&m), None)
        .unwrap()
        .0
        .to_scalar::<f32>()
        .unwrap();
    let without = reward_loss(&rc, &rr, None, None).unwrap().0.to_scalar::<f32>().unwrap();
    assert!(
        (got - want).abs() < 1e-6 && (got - without).abs() > 1e-3,
        "{got} vs {want} (no margin: {without})"
    );

    let out = trainer.train().unwrap();
    let acc = out.series("eval_accuracy");
    assert_eq!(acc.len(), 3, "{acc:?}");
    assert!(acc[2].1 >= 0.875, "held-out accuracy {acc:?}");
    let head = trainer.objective.head.clone();
    // The last evaluation kept each held-out pair's rewards: the share ranked right is `eval_accuracy` (one batch).
    let per_pair = trainer.objective.eval_rewards.clone();
    assert_eq!(per_pair.len(), 8);
    let right = per_pair.iter().filter(|(c, r)| c > r).count() as f64 / 8.0;
    assert!((right - acc[2].1).abs() < 1e-9, "{right} vs {}", acc[2].1);
    drop(trainer);
    // The saved adapter names its base: `kit grpo --reward_model` loads the reward model's base from there.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(saved["base_model_name_or_path"], model.name.as_str());

    // What was saved scores exactly as what was trained.
    let prompts: Vec<String> = vec!["t120 t160".into(), "t120 t160".into()];
    let completions: Vec<String> = vec![" t31 t34".into(), " t61 t64".into()];
    let trained = RewardModel::new(model, adapter, head);
    let a = trained.score(&prompts, &completions).unwrap();
    let mut fresh = common::tiny_model("llama");
    let loaded_adapter = lora::load(&mut fresh.decoder, &out_dir).unwrap();
    let loaded_head = RewardHead::load(&out_dir, fresh.device()).unwrap();
    let reloaded = RewardModel::new(fresh, loaded_adapter, loaded_head);
    let b = reloaded.score(&prompts, &completions).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    assert!(a[0] > a[1], "chosen-style answer should score higher: {a:?}");

    // Scoring pairs tokenizes them as training did: the same rewards as the trainer's last evaluation.
    let dev_rows = kit::data::load_preference(&dev, false).unwrap().rows;
    let scored = trained.score_pairs(&dev_rows, cfg.max_length).unwrap();
    for ((c, r), (ec, er)) in scored.iter().zip(&per_pair) {
        assert!(
            (*c as f64 - ec).abs() < 1e-4 && (*r as f64 - er).abs() < 1e-4,
            "{scored:?} vs {per_pair:?}"
        );
    }
    // A question and answer scored through the chat template equal the same pair made a conversation.
    let mut chat = trained;
    chat.model.tokenizer.chat_template = Some(
        "{% for m in messages %}{{ 't5 ' if m.role == 'user' else 't6 ' }}{{ m.content }} t2 {% endfor %}\
         {% if add_generation_prompt %}t6{% endif %}"
            .into(),
    );
    let convs = kit::data::load_preference(&dev, false).unwrap().into_conversations();
    let want = chat.score_pairs(&convs[..2], None).unwrap();
    let qa: Vec<(String, String)> = dev_rows[..2]
        .iter()
        .map(|(_, r)| match (&r.prompt, &r.chosen) {
            (kit::data::Turns::Text(p), kit::data::Turns::Text(c)) => (p.clone(), c.clone()),
            _ => unreachable!("text rows"),
        })
        .collect();
    let qa: Vec<(&str, &str)> = qa.iter().map(|(q, a)| (q.as_str(), a.as_str())).collect();
    let got = chat.score_chat(&qa).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w.0).abs() < 1e-5, "{got:?} vs {want:?}");
    }
    assert!(
        (want[0].0 - scored[0].0).abs() > 1e-4,
        "the template changed nothing: {want:?}"
    );
}

#[test]
fn grpo_logs_every_sampled_completion_with_the_rewards_its_metrics_average() {
    let mut model = common::tiny_model("llama");
    let adapter = model.attach_lora(&lora_cfg()).unwrap();
    let rows = common::tiny_prompt_rows(4);
    let dir = common::temp_dir("grpo-log-completions");
    let cfg = GrpoConfig {
        args: TrainingArguments {
            output_dir: dir.clone(),
            learning_rate: 1e-2,
            per_device_train_batch_size: 8,
            max_steps: Some(3),
            logging_steps: 1,
            disable_tqdm: true,
            seed: 5,
            ..Default::default()
        },
        num_generations: 4,
        max_completion_length: 3,
        log_completions: true,
        ..Default::default()
    };
    let good = reward_fn("good_start", |_, c, _| {
        first_id(c).map_or(0.0, |id| GOOD.contains(&id) as i32 as f32)
    });
    let mut trainer = kit::train::grpo::grpo_trainer_from_rows(&model, &adapter, &rows, &[], vec![good], &cfg).unwrap();
    let out = trainer.train().unwrap();
    let logged = kit::train::completions::read(dir.join("completions.jsonl")).unwrap();
    assert_eq!(logged, trainer.objective.completions);
    // 3 steps × 2 prompts × 4 completions, each step's rewards averaging to the step's logged mean.
    assert_eq!(logged.len(), 24);
    for (step, mean) in out.series("rewards/good_start/mean") {
        let of_step: Vec<f64> = logged
            .iter()
            .filter(|c| c.step as f64 == step)
            .map(|c| c.rewards["good_start"].unwrap())
            .collect();
        assert_eq!(of_step.len(), 8);
        let m = of_step.iter().sum::<f64>() / 8.0;
        assert!((m - mean).abs() < 1e-9, "step {step}: {m} vs {mean}");
    }
    assert!(logged.iter().all(|c| c.prompt.starts_with("t1 t")));
}

#[test]
fn grpo_skipping_tied_groups_changes_no_step_for_any_loss_type() {
    // β = 0: the completions of a group whose rewards tie have advantage 0 and add nothing to the loss or its
    // gradient, whatever their ratio (two iterations per rollout move it off 1), so the objective skips their passes. The oracle is the same run without the skip: loss, gradient
    // norm, clip ratios and the trained weights must agree, for every aggregation over tokens.
    let prompts: Vec<PromptExample> = (0..2u32)
        .map(|i| PromptExample {
            ids: vec![1, 10 + i, 20 + i],
            text: format!("t1 t{} t{}", 10 + i, 20 + i),
            columns: Default::default(),
        })
        .collect();
    let run = |loss_type: GrpoLossType, iterations: usize, skip: bool| -> (Vec<kit::train::Metrics>, Vec<f32>) {
        let mut model = common::tiny_model("llama");
        // A bias towards EOS (id 2) gives completions of unequal lengths, so token and completion means differ.
        let mut bias = vec![0f32; model.config().vocab_size];
        bias[2] = 3.0;
        model.decoder.lm_head.bias = Some(candle_core::Tensor::new(bias, &candle_core::Device::Cpu).unwrap());
        let adapter = model.attach_lora(&lora_cfg()).unwrap();
        // The first prompt's group always ties; the second's is scored by its first token.
        let reward = reward_fn("tied_then_good", |p, c, _| {
            if p.contains("t10") {
                1.0
            } else {
                first_id(c).map_or(0.0, |id| (id % 2) as f32)
            }
        });
        let cfg = GrpoConfig {
            args: TrainingArguments {
                output_dir: common::temp_dir(&format!("grpo-skip-{loss_type:?}-{iterations}-{skip}")),
                learning_rate: 1e-2,
                per_device_train_batch_size: 16,
                max_steps: Some(2 * iterations),
                logging_steps: 1,
                disable_tqdm: true,
                seed: 9,
                ..Default::default()
            },
            num_generations: 8,
            max_completion_length: 5,
            num_iterations: iterations,
            loss_type,
            ..Default::default()
        };
        let mut grpo = Grpo::new(&model, cfg.clone(), vec![reward]).unwrap();
        grpo.skip_zero_advantage = skip;
        let out = Trainer::new(&model, &adapter, grpo, cfg.args.clone())
            .with_data(prompts.clone(), vec![])
            .train()
            .unwrap();
        let weights = adapter
            .params()
            .iter()
            .flat_map(|(_, _, b)| b.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        (out.log_history, weights)
    };
    for (loss_type, iterations) in [
        (GrpoLossType::Grpo, 1),
        (GrpoLossType::DrGrpo, 1),
        (GrpoLossType::Dapo, 1),
        (GrpoLossType::Bnpo, 1),
        (GrpoLossType::Grpo, 2),
        (GrpoLossType::Dapo, 2),
    ] {
        let ((skipped, w_skipped), (full, w_full)) =
            (run(loss_type, iterations, true), run(loss_type, iterations, false));
        let steps: Vec<_> = full.iter().filter(|m| m.contains_key("grad_norm")).collect();
        assert_eq!(steps.len(), 2 * iterations, "{full:?}");
        for (a, b) in skipped.iter().filter(|m| m.contains_key("grad_norm")).zip(&steps) {
            assert!(
                b["frac_reward_zero_std"] > 0.0 && b["frac_reward_zero_std"] < 1.0 && b["grad_norm"] > 0.0,
                "{loss_type:?}: the step must have a tied group and a scored one: {b:?}"
            );
            for k in [
                "loss",
                "grad_norm",
                "reward",
                "clip_ratio/region_mean",
                "clip_ratio/low_min",
            ] {
                let (x, y) = (a[k], b[k]);
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1e-3),
                    "{loss_type:?} step {}: {k} {x} (skipped) vs {y} (full)",
                    b["step"]
                );
            }
        }
        let moved = w_full.iter().map(|x| x.abs()).fold(0f32, f32::max);
        assert!(moved > 1e-4, "{loss_type:?}: B did not move ({moved})");
        let diff = w_skipped
            .iter()
            .zip(&w_full)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-5 * moved.max(1.0), "{loss_type:?}: weights differ by {diff}");
    }
}

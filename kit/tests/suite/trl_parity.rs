//! kit's trainer losses, metrics and gradients against TRL's own code (fixtures from
//! tests/oracle/make_trl_fixtures.py): DPO end to end on the tiny Llama + PEFT adapter (every loss type), GRPO's loss
//! and advantages from fixed log-probs and rewards, the reward model's Bradley–Terry loss, and completion-only SFT.
use crate::common;
use crate::common::json_ids as ids;

use candle_core::{Device, Tensor, Var};
use kit::data::Tokenized;
use kit::lora::Adapter;
use kit::model::Model;
use kit::train::dpo::{Dpo, DpoConfig, DpoLossType, PairExample};
use kit::train::grpo::{advantages, grpo_loss, GrpoConfig, GrpoLossType, ScaleRewards};
use kit::train::reward_model::reward_loss;
use kit::train::sft::Sft;
use kit::train::{micro_batch_weight, Objective, StepInfo};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = common::fixtures().join("trl").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-5 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "{what}: kit {got} vs TRL {want}");
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(f64s).collect()
}

fn tensor2(v: &Value) -> Tensor {
    let m = matrix(v);
    let (r, c) = (m.len(), m[0].len());
    let flat: Vec<f32> = m.into_iter().flatten().map(|x| x as f32).collect();
    Tensor::from_vec(flat, (r, c), &Device::Cpu).unwrap()
}

/// The tiny Llama with the PEFT adapter of tests/fixtures/lora/llama, in training mode.
fn model_with_adapter() -> (Model, Adapter) {
    let mut model = common::tiny_model("llama");
    let adapter = kit::lora::load(&mut model.decoder, common::fixtures().join("lora/llama")).unwrap();
    adapter.set_training(true);
    (model, adapter)
}

/// Compare d loss / d (every LoRA tensor) with TRL's, relative to the largest gradient of each tensor.
fn check_grads(adapter: &Adapter, grads: &candle_core::backprop::GradStore, file: &str) {
    let want = candle_core::safetensors::load(common::fixtures().join("trl").join(file), &Device::Cpu).unwrap();
    let checked = common::assert_lora_grads(file, adapter, grads, &want);
    assert_eq!(checked, want.len());
}

fn pair_examples(pairs: &Value) -> Vec<PairExample> {
    pairs
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let (prompt, chosen, rejected) = (ids(&p[0]), ids(&p[1]), ids(&p[2]));
            let seq = |c: &[u32]| Tokenized {
                ids: prompt.iter().chain(c).copied().collect(),
                completion_mask: prompt.iter().map(|_| false).chain(c.iter().map(|_| true)).collect(),
            };
            PairExample {
                chosen: seq(&chosen),
                rejected: seq(&rejected),
                ref_logps: None,
                margin: None,
            }
        })
        .collect()
}

const AT: StepInfo = StepInfo {
    step: 0,
    micro: 0,
    seed: 0,
    eval: false,
    items_in_step: None,
};

#[test]
fn dpo_matches_trl_end_to_end_for_every_loss_type() {
    let fx = fixture("dpo");
    let pairs = pair_examples(&fx["pairs"]);
    let refs: Vec<&PairExample> = pairs.iter().collect();
    for case in fx["cases"].as_array().unwrap() {
        let (model, adapter) = model_with_adapter();
        let cfg = DpoConfig {
            beta: case["beta"].as_f64().unwrap(),
            loss_type: match case["loss_type"].as_str().unwrap() {
                "sigmoid" => DpoLossType::Sigmoid,
                "hinge" => DpoLossType::Hinge,
                "ipo" => DpoLossType::Ipo,
                other => panic!("{other}"),
            },
            ..Default::default()
        };
        let name = case["name"].as_str().unwrap();
        let mut dpo = Dpo::new(&model, cfg);
        let out = dpo.loss(&model, &adapter, &refs, AT).unwrap();
        close(
            out.loss.to_scalar::<f32>().unwrap() as f64,
            case["loss"].as_f64().unwrap(),
            name,
        );
        for (k, want) in case["metrics"].as_object().unwrap() {
            if k == "num_tokens" {
                continue;
            }
            let got = *out
                .metrics
                .get(k)
                .unwrap_or_else(|| panic!("{name}: kit does not log {k}"));
            close(got, want.as_f64().unwrap(), &format!("{name} {k}"));
        }
        let grads = out.loss.backward().unwrap();
        check_grads(&adapter, &grads, &format!("{name}.grads.safetensors"));

        // precompute_ref_log_probs: the reference scored once up front gives the same loss and gradients.
        let mut pre = pairs.clone();
        dpo.precompute(&model, &adapter, &mut pre, 2).unwrap();
        assert!(pre.iter().all(|p| p.ref_logps.is_some()));
        let pre_refs: Vec<&PairExample> = pre.iter().collect();
        let out = dpo.loss(&model, &adapter, &pre_refs, AT).unwrap();
        close(
            out.loss.to_scalar::<f32>().unwrap() as f64,
            case["loss"].as_f64().unwrap(),
            &format!("{name} (precomputed reference)"),
        );
        check_grads(
            &adapter,
            &out.loss.backward().unwrap(),
            &format!("{name}.grads.safetensors"),
        );

        // In evaluation the objective keeps each pair's rewards: their means are TRL's reward metrics.
        dpo.begin_evaluation();
        dpo.loss(&model, &adapter, &pre_refs, StepInfo { eval: true, ..AT })
            .unwrap();
        let per_pair = &dpo.eval_rewards;
        assert_eq!(per_pair.len(), pre.len(), "{name}");
        let n = per_pair.len() as f64;
        let metric = |k: &str| case["metrics"][k].as_f64().unwrap();
        close(
            per_pair.iter().map(|r| r.0).sum::<f64>() / n,
            metric("rewards/chosen"),
            &format!("{name} per pair"),
        );
        close(
            per_pair.iter().map(|r| r.1).sum::<f64>() / n,
            metric("rewards/rejected"),
            &format!("{name} per pair"),
        );
        let ranked = per_pair.iter().filter(|r| r.0 > r.1).count() as f64 / n;
        close(ranked, metric("rewards/accuracies"), &format!("{name} per pair"));
    }
}

/// GRPO's advantages, loss, metrics and d loss / d logp against a TRL fixture. With gradient accumulation the
/// generation batch is cut into micro-batches as the loop cuts it: each micro-batch's loss is weighted as the loop
/// weights it and the gradient is that of the weighted sum, which is what the loop's accumulated gradient is.
fn check_grpo_fixture(fixture_name: &str) {
    let fx = fixture(fixture_name);
    let g = fx["num_generations"].as_u64().unwrap() as usize;
    let accumulation = fx["gradient_accumulation_steps"].as_u64().unwrap_or(1) as usize;
    let names: Vec<String> = vec!["format".into(), "accuracy".into()];
    let weights = f64s(&fx["reward_weights"]);
    let rewards = matrix(&fx["rewards_per_func"]);
    let old = tensor2(&fx["old_per_token_logps"]);
    let reference = tensor2(&fx["ref_per_token_logps"]);
    let mask = tensor2(&fx["completion_mask"]);
    let n = mask.dim(0).unwrap();
    let rows = n / accumulation;
    let tokens_in_batch = mask.sum_all().unwrap().to_scalar::<f32>().unwrap() as usize;
    for case in fx["cases"].as_array().unwrap() {
        let name = &format!("{fixture_name}: {}", case["name"].as_str().unwrap());
        let scale = match case["scale_rewards"].as_str().unwrap() {
            "group" => ScaleRewards::Group,
            "batch" => ScaleRewards::Batch,
            _ => ScaleRewards::None,
        };
        let (adv, reward_metrics) = advantages(&rewards, &weights, &names, g, scale).unwrap();
        for (i, (got, want)) in adv.iter().zip(f64s(&case["advantages"])).enumerate() {
            close(*got, want, &format!("{name} advantage {i}"));
        }
        let cfg = GrpoConfig {
            beta: case["beta"].as_f64().unwrap(),
            epsilon: case["epsilon"].as_f64().unwrap(),
            epsilon_high: case["epsilon_high"].as_f64(),
            loss_type: match case["loss_type"].as_str().unwrap() {
                "grpo" => GrpoLossType::Grpo,
                "dr_grpo" => GrpoLossType::DrGrpo,
                "dapo" => GrpoLossType::Dapo,
                _ => GrpoLossType::Bnpo,
            },
            max_completion_length: fx["max_completion_length"].as_u64().unwrap() as usize,
            use_bias_correction_kl: case["use_bias_correction_kl"].as_bool().unwrap(),
            ..Default::default()
        };
        let logps = Var::from_tensor(&tensor2(&fx["per_token_logps"])).unwrap();
        let adv_t = Tensor::from_vec(adv.iter().map(|&a| a as f32).collect(), adv.len(), &Device::Cpu).unwrap();
        // What the GRPO objective tells the loop (`loss_items`), and the weight the loop gives each micro-batch.
        let items = cfg.loss_type.normalises_over_step().then_some(tokens_in_batch);
        let weight = micro_batch_weight(items, accumulation);
        let mut loss = Tensor::zeros((), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut metrics = kit::train::Metrics::new();
        for micro in 0..accumulation {
            let part = |t: &Tensor| t.narrow(0, micro * rows, rows).unwrap();
            let (micro_loss, micro_metrics) = grpo_loss(
                &part(logps.as_tensor()),
                &part(&old),
                Some(&part(&reference)),
                &part(&mask),
                &part(&adv_t),
                &cfg,
                items,
            )
            .unwrap();
            let micro_loss = (micro_loss * weight).unwrap();
            if accumulation > 1 {
                close(
                    micro_loss.to_scalar::<f32>().unwrap() as f64,
                    case["micro_losses"][micro].as_f64().unwrap(),
                    &format!("{name} micro-batch {micro} loss"),
                );
            }
            loss = (loss + micro_loss).unwrap();
            for (k, v) in micro_metrics {
                *metrics.entry(k).or_default() += v / accumulation as f64;
            }
        }
        metrics.extend(reward_metrics);
        close(
            loss.to_scalar::<f32>().unwrap() as f64,
            case["loss"].as_f64().unwrap(),
            name,
        );
        for (k, want) in case["metrics"].as_object().unwrap() {
            let got = *metrics.get(k).unwrap_or_else(|| panic!("{name}: kit does not log {k}"));
            close(got, want.as_f64().unwrap(), &format!("{name} {k}"));
        }
        let grad = loss
            .backward()
            .unwrap()
            .get(logps.as_tensor())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (r, (got_row, want_row)) in grad.iter().zip(matrix(&case["grad_per_token_logps"])).enumerate() {
            for (c, (got, want)) in got_row.iter().zip(want_row).enumerate() {
                assert!(
                    (*got as f64 - want).abs() < 1e-6,
                    "{name} grad[{r}][{c}]: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn grpo_loss_and_advantages_match_trl() {
    check_grpo_fixture("grpo");
}

#[test]
fn grpo_under_gradient_accumulation_matches_trl() {
    // Two micro-batches of one group each: `dapo` divides by the whole generation batch's tokens, the other loss
    // types average per-micro-batch means (TRL 1.16's `_compute_loss`).
    check_grpo_fixture("grpo_accum2");
}

#[test]
fn reward_model_loss_matches_trl() {
    let fx = fixture("reward");
    let (c, r, m) = (f64s(&fx["chosen"]), f64s(&fx["rejected"]), f64s(&fx["margin"]));
    let t = |v: &[f64]| Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), v.len(), &Device::Cpu).unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let chosen = Var::from_tensor(&t(&c)).unwrap();
        let rejected = Var::from_tensor(&t(&r)).unwrap();
        let margin = case["margin"].as_bool().unwrap().then(|| t(&m));
        let center = case["center_rewards_coefficient"].as_f64();
        let (loss, metrics) = reward_loss(chosen.as_tensor(), rejected.as_tensor(), margin.as_ref(), center).unwrap();
        let what = format!("margin={} center={center:?}", margin.is_some());
        close(
            loss.to_scalar::<f32>().unwrap() as f64,
            case["loss"].as_f64().unwrap(),
            &what,
        );
        for (k, want) in case["metrics"].as_object().unwrap() {
            close(metrics[k], want.as_f64().unwrap(), &format!("{what} {k}"));
        }
        let grads = loss.backward().unwrap();
        let mut got = grads.get(chosen.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        got.extend(grads.get(rejected.as_tensor()).unwrap().to_vec1::<f32>().unwrap());
        for (a, b) in got.iter().zip(f64s(&case["grad_rewards"])) {
            assert!((*a as f64 - b).abs() < 1e-6, "{what}: grad {a} vs {b}");
        }
    }
}

#[test]
fn completion_only_sft_matches_transformers_loss_and_grads() {
    let fx = fixture("sft");
    let (model, adapter) = model_with_adapter();
    let examples: Vec<Tokenized> = fx["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .zip(fx["completion_masks"].as_array().unwrap())
        .map(|(s, m)| Tokenized {
            ids: ids(s),
            completion_mask: m.as_array().unwrap().iter().map(|x| x.as_u64() == Some(1)).collect(),
        })
        .collect();
    let refs: Vec<&Tokenized> = examples.iter().collect();
    let out = Sft::new(&model).loss(&model, &adapter, &refs, AT).unwrap();
    close(
        out.loss.to_scalar::<f32>().unwrap() as f64,
        fx["loss"].as_f64().unwrap(),
        "sft loss",
    );
    close(
        out.metrics["mean_token_accuracy"],
        fx["mean_token_accuracy"].as_f64().unwrap(),
        "accuracy",
    );
    check_grads(&adapter, &out.loss.backward().unwrap(), "sft.grads.safetensors");
}

//! The shared training loop on a tiny fixture model: resuming reproduces an uninterrupted run, gradient accumulation
//! equals one big batch, NaN stops with the last good checkpoint named, metrics carry TRL's keys, and SFT learns.
use crate::common;

use std::sync::atomic::Ordering;

use kit::data::Tokenized;
use kit::lora::{Adapter, LoraConfig};
use kit::model::Model;
use kit::train::sft::Sft;
use kit::train::{
    Metrics, Objective, StepInfo, StepOutput, StopWhen, TrainOutput, Trainer, TrainerCallback, TrainerControl,
    TrainerState, TrainingArguments,
};

/// Deterministic token sequences; the first 3 tokens are prompt, the rest completion.
fn examples(n: usize, len: usize) -> Vec<Tokenized> {
    (0..n)
        .map(|i| Tokenized {
            ids: (0..len).map(|j| (3 + (i * 7 + j * 13) % 250) as u32).collect(),
            completion_mask: (0..len).map(|j| j >= 3).collect(),
        })
        .collect()
}

fn args(out: &std::path::Path, steps: usize) -> TrainingArguments {
    TrainingArguments {
        output_dir: out.to_path_buf(),
        learning_rate: 1e-2,
        per_device_train_batch_size: 2,
        max_steps: Some(steps),
        logging_steps: 1,
        warmup_steps: 2,
        eval_on_start: true,
        disable_tqdm: true,
        ..Default::default()
    }
}

fn setup_with_dropout(dropout: f32) -> (Model, Adapter) {
    let mut model = common::tiny_model("llama");
    let adapter = model
        .attach_lora(&LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: dropout,
            ..Default::default()
        })
        .unwrap();
    (model, adapter)
}

fn setup() -> (Model, Adapter) {
    setup_with_dropout(0.1)
}

fn run(args: TrainingArguments, stop_at_once: bool) -> (TrainOutput, Vec<Vec<f32>>) {
    let (model, adapter) = setup();
    let mut t = Trainer::new(&model, &adapter, Sft::new(&model), args).with_data(examples(10, 9), examples(4, 9));
    t.stop.store(stop_at_once, Ordering::Relaxed);
    let out = t.train().unwrap();
    let weights = adapter
        .vars()
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    (out, weights)
}

fn losses(history: &[Metrics]) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter_map(|m| Some((m["step"], *m.get("loss")?)))
        .collect()
}

#[test]
fn resumed_run_repeats_the_uninterrupted_one() {
    let a_dir = common::temp_dir("loop-full");
    let (full, full_w) = run(args(&a_dir, 6), false);
    assert_eq!(full.global_step, 6);

    // Interrupted after the first step (the stop flag, as Ctrl-C sets it), then resumed from the checkpoint.
    let b_dir = common::temp_dir("loop-resumed");
    let (stopped, _) = run(args(&b_dir, 6), true);
    assert!(stopped.interrupted && stopped.global_step == 1);
    assert!(b_dir.join("checkpoint-1/optimizer.safetensors").exists());
    let resumed_args = TrainingArguments {
        resume_from_checkpoint: Some("latest".into()),
        ..args(&b_dir, 6)
    };
    let (resumed, resumed_w) = run(resumed_args, false);
    assert_eq!(resumed.global_step, 6);

    // metrics.jsonl of the resumed run reads like the uninterrupted one, step by step.
    let a = losses(&full.log_history);
    let b = losses(&kit::metrics::read_metrics(b_dir.join("metrics.jsonl")).unwrap());
    assert_eq!(a.len(), 6);
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert!((la - lb).abs() < 1e-6, "step {sa}: {la} vs {lb}");
    }
    // Losses must move, or the comparison above proves nothing.
    assert!((a[0].1 - a[5].1).abs() > 1e-3, "{a:?}");
    for (x, y) in full_w.iter().zip(&resumed_w) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 1e-6);
        }
    }
}

#[test]
fn metrics_lines_carry_trl_keys_and_eval() {
    let dir = common::temp_dir("loop-metrics");
    let (out, _) = run(args(&dir, 2), false);
    let train_line = out.log_history.iter().find(|m| m.contains_key("loss")).unwrap();
    for k in [
        "loss",
        "grad_norm",
        "learning_rate",
        "epoch",
        "num_tokens",
        "step",
        "mean_token_accuracy",
        "entropy",
    ] {
        assert!(train_line.contains_key(k), "missing {k} in {train_line:?}");
    }
    // Warm-up of 2 steps from 0: the first step runs at lr 0, the second at half the peak.
    assert_eq!(train_line["learning_rate"], 0.0);
    let second = out
        .log_history
        .iter()
        .filter(|m| m.contains_key("loss"))
        .nth(1)
        .unwrap();
    assert!((second["learning_rate"] - 5e-3).abs() < 1e-12);
    assert_eq!(train_line["num_tokens"], 18.0);
    let evals: Vec<&Metrics> = out.log_history.iter().filter(|m| m.contains_key("eval_loss")).collect();
    assert!(evals[0].contains_key("eval_mean_token_accuracy"));
    // eval_on_start, then the end of the run.
    assert_eq!(evals.iter().map(|m| m["step"]).collect::<Vec<_>>(), vec![0.0, 2.0]);
    assert!(
        dir.join("loss.svg").exists()
            && dir.join("loss.png").exists()
            && dir.join("adapter_model.safetensors").exists()
    );
}

/// SFT on `data` for `steps` steps of `bs` × `accum` examples: (logged losses, adapter weights after).
fn accumulated_run(
    data: &[Tokenized],
    bs: usize,
    accum: usize,
    steps: usize,
    name: &str,
) -> (Vec<(f64, f64)>, Vec<f32>) {
    let dir = common::temp_dir(name);
    let (model, adapter) = setup_with_dropout(0.0);
    let a = TrainingArguments {
        per_device_train_batch_size: bs,
        gradient_accumulation_steps: accum,
        warmup_steps: 0,
        eval_on_start: false,
        // Adam's first step is lr·g/(|g| + ε): where a gradient is as small as ε (cancellations), float rounding
        // that depends on the batch shape moves the weight by a sizeable part of lr. A larger ε keeps the
        // comparison about the accumulated gradient, not about rounding at that scale.
        adam_epsilon: 1e-6,
        ..args(&dir, steps)
    };
    let out = Trainer::new(&model, &adapter, Sft::new(&model), a)
        .with_data(data.to_vec(), vec![])
        .train()
        .unwrap();
    (losses(&out.log_history), adapter_weights(&adapter))
}

/// Every LoRA weight of `adapter`, flattened in slot order.
fn adapter_weights(adapter: &Adapter) -> Vec<f32> {
    adapter
        .vars()
        .iter()
        .flat_map(|v| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn accumulation_equals_one_big_batch() {
    // With equal-length examples, 2 micro-batches of 2 average to the same gradient as one batch of 4.
    let data = examples(8, 9);
    let (_, big) = accumulated_run(&data, 4, 1, 1, "accum-big");
    let (_, small) = accumulated_run(&data, 2, 2, 1, "accum-small");
    // Both runs start from the same seeded adapter; equal weights mean something only if the step moved them.
    let start = adapter_weights(&setup_with_dropout(0.0).1);
    let moved = big.iter().zip(&start).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-4, "the step did not move the adapter (max |Δw| {moved})");
    let max = big.iter().zip(&small).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max < 1e-6, "max difference {max}");
}

#[test]
fn accumulation_over_unequal_lengths_is_a_token_mean_over_the_step() {
    // transformers normalises by the step's token count (num_items_in_batch), not per micro-batch. Lengths 17, 11,
    // 7, 5 make every split into two pairs unequal in completion tokens, so a mean of micro-batch means would differ.
    let data: Vec<Tokenized> = [17, 11, 7, 5]
        .iter()
        .enumerate()
        .map(|(i, &len)| examples(i + 1, len).remove(i))
        .collect();
    let (big, _) = accumulated_run(&data, 4, 1, 2, "accum-unequal-big");
    let (small, _) = accumulated_run(&data, 2, 2, 2, "accum-unequal-small");
    assert_eq!(big.len(), small.len());
    for ((_, a), (_, b)) in big.iter().zip(&small) {
        assert!((a - b).abs() < 1e-5, "big batch {big:?} vs accumulated {small:?}");
    }
}

/// SFT's loss, except that step 2 (0-based) returns NaN.
struct NanAtStep2(Sft);

impl Objective for NanAtStep2 {
    type Example = Tokenized;
    fn name(&self) -> &'static str {
        "sft"
    }
    fn loss(&mut self, m: &Model, a: &Adapter, b: &[&Tokenized], at: StepInfo) -> kit::Result<StepOutput> {
        let mut out = self.0.loss(m, a, b, at)?;
        if at.step == 2 && !at.eval {
            out.loss = (out.loss * f64::NAN)?;
        }
        Ok(out)
    }
}

#[test]
fn nan_loss_stops_and_names_the_last_good_checkpoint() {
    let dir = common::temp_dir("loop-nan");
    let (model, adapter) = setup();
    let a = TrainingArguments {
        save_steps: Some(1),
        ..args(&dir, 5)
    };
    let err = Trainer::new(&model, &adapter, NanAtStep2(Sft::new(&model)), a)
        .with_data(examples(10, 9), vec![])
        .train()
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN") && err.contains("step 3"), "{err}");
    assert!(err.contains("checkpoint-2"), "{err}");
    assert!(dir.join("checkpoint-2/adapter_model.safetensors").exists());
}

/// SFT's loss, except that micro-batch 1 of step 2 (0-based) has a finite loss and a NaN gradient.
struct NanGradientAtStep2(Sft);

impl Objective for NanGradientAtStep2 {
    type Example = Tokenized;
    fn name(&self) -> &'static str {
        "sft"
    }
    fn loss(&mut self, m: &Model, a: &Adapter, b: &[&Tokenized], at: StepInfo) -> kit::Result<StepOutput> {
        let mut out = self.0.loss(m, a, b, at)?;
        if at.step == 2 && at.micro == 1 && !at.eval {
            let value = out.loss.detach();
            out.loss =
                kit::autograd::with_backward(&out.loss, value, "nan-gradient", |_, _, g| g.affine(f64::NAN, 0.0))?;
        }
        Ok(out)
    }
}

#[test]
fn a_nan_gradient_names_its_step_and_micro_batch() {
    let dir = common::temp_dir("loop-nan-grad");
    let (model, adapter) = setup();
    let a = TrainingArguments {
        save_steps: Some(1),
        gradient_accumulation_steps: 2,
        ..args(&dir, 5)
    };
    let err = Trainer::new(&model, &adapter, NanGradientAtStep2(Sft::new(&model)), a)
        .with_data(examples(10, 9), vec![])
        .train()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gradient norm became NaN at step 3 (micro-batch 1)"),
        "{err}"
    );
    assert!(err.contains("checkpoint-2"), "{err}");
}

/// Records every hook the loop calls; saves at step 2 and stops the run at step 3 through the control.
struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl TrainerCallback for Recorder {
    fn on_train_begin(&mut self, s: &TrainerState) -> kit::Result<()> {
        self.0
            .borrow_mut()
            .push(format!("begin {}/{}", s.global_step, s.max_steps));
        Ok(())
    }
    fn on_step_end(&mut self, s: &TrainerState, m: &Metrics, c: &mut TrainerControl) -> kit::Result<()> {
        assert!(m.contains_key("loss") && m.contains_key("grad_norm"), "{m:?}");
        c.should_save |= s.global_step == 2;
        c.should_training_stop |= s.global_step == 3;
        self.0.borrow_mut().push(format!("step {}", s.global_step));
        Ok(())
    }
    fn on_log(&mut self, s: &TrainerState, _: &Metrics, _: &mut TrainerControl) -> kit::Result<()> {
        self.0.borrow_mut().push(format!("log {}", s.global_step));
        Ok(())
    }
    fn on_evaluate(&mut self, s: &TrainerState, m: &Metrics, _: &mut TrainerControl) -> kit::Result<()> {
        assert!(m.contains_key("eval_loss"), "{m:?}");
        self.0.borrow_mut().push(format!("eval {}", s.global_step));
        Ok(())
    }
    fn on_save(&mut self, s: &TrainerState, dir: &std::path::Path) -> kit::Result<()> {
        assert!(dir.join("trainer_state.json").exists());
        self.0.borrow_mut().push(format!("save {}", s.global_step));
        Ok(())
    }
    fn on_train_end(&mut self, s: &TrainerState, _: &[kit::train::Metrics]) -> kit::Result<()> {
        self.0.borrow_mut().push(format!("end {}", s.global_step));
        Ok(())
    }
}

#[test]
fn callbacks_see_every_phase_and_can_save_and_stop_the_run() {
    let dir = common::temp_dir("loop-callbacks");
    let (model, adapter) = setup();
    let events = std::rc::Rc::new(std::cell::RefCell::new(vec![]));
    let a = TrainingArguments {
        logging_steps: 2,
        eval_on_start: false,
        ..args(&dir, 6)
    };
    let out = Trainer::new(&model, &adapter, Sft::new(&model), a)
        .with_data(examples(10, 9), examples(4, 9))
        .with_callback(Recorder(events.clone()))
        .train()
        .unwrap();
    // Step 3 ends the run like a last step: its metrics are logged, it is evaluated, the final adapter is saved.
    assert_eq!(
        *events.borrow(),
        [
            "begin 0/6",
            "step 1",
            "step 2",
            "log 2",
            "save 2",
            "step 3",
            "log 3",
            "eval 3",
            "save 3",
            "end 3"
        ]
    );
    assert_eq!(out.global_step, 3);
    assert!(!out.interrupted);
    assert_eq!(out.adapter_dir, dir);
    assert!(dir.join("adapter_model.safetensors").exists() && dir.join("checkpoint-2").exists());
    assert_eq!(out.series("eval_loss").len(), 1);
}

#[test]
fn stop_when_ends_the_run_at_the_first_line_past_the_bound() {
    let dir = common::temp_dir("loop-stop-when");
    let (model, adapter) = setup();
    // The loss starts near ln 256 ≈ 5.55 (the tiny vocabulary) and falls as SFT fits; stop once it is under 5.5.
    let mut t = Trainer::new(&model, &adapter, Sft::new(&model), args(&dir, 40)).with_data(examples(10, 9), vec![]);
    t.add_callback(StopWhen::below("loss", 5.5));
    let out = t.train().unwrap();
    let l = losses(&out.log_history);
    assert!(out.global_step < 40, "{l:?}");
    assert!(
        l.last().unwrap().1 < 5.5 && l[..l.len() - 1].iter().all(|(_, v)| *v >= 5.5),
        "{l:?}"
    );
}

#[test]
fn sft_fits_its_data() {
    let dir = common::temp_dir("loop-sft-learns");
    let a = TrainingArguments {
        learning_rate: 5e-2,
        max_steps: Some(40),
        warmup_steps: 0,
        ..args(&dir, 40)
    };
    let (model, adapter) = setup_with_dropout(0.0);
    let out = Trainer::new(&model, &adapter, Sft::new(&model), a)
        .with_data(examples(2, 9), vec![])
        .train()
        .unwrap();
    let l = losses(&out.log_history);
    let (first, last) = (l[0].1, l[l.len() - 1].1);
    assert!(last < first - 0.75, "loss {first} → {last}");
}

#[test]
fn resuming_a_different_trainer_is_refused() {
    let dir = common::temp_dir("loop-wrong-kind");
    let _ = run(args(&dir, 1), false);
    let (model, adapter) = setup();
    let a = TrainingArguments {
        resume_from_checkpoint: Some("latest".into()),
        ..args(&dir, 2)
    };
    let dpo = kit::train::dpo::Dpo::new(&model, Default::default());
    let err = Trainer::new(&model, &adapter, dpo, a)
        .with_data(
            vec![kit::train::dpo::PairExample {
                chosen: examples(1, 6).remove(0),
                rejected: examples(2, 6).remove(1),
                ref_logps: None,
                margin: None,
            }],
            vec![],
        )
        .train()
        .unwrap_err()
        .to_string();
    assert!(err.contains("sft checkpoint") && err.contains("dpo run"), "{err}");
}

#[test]
fn log_prob_is_the_sum_of_next_token_log_softmax() {
    let model = common::tiny_model("llama");
    let got = model.log_prob("t5 t9 t200 t17").unwrap();
    let ids = candle_core::Tensor::new(&[[5u32, 9, 200, 17]], &candle_core::Device::Cpu).unwrap();
    let logits = model.decoder.forward(&ids, None, None).unwrap();
    let lsm = candle_nn::ops::log_softmax(&logits, 2)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let want: f64 = [(0, 9), (1, 200), (2, 17)].iter().map(|&(i, t)| lsm[i][t] as f64).sum();
    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    let c = model.completion_log_prob("t5 t9", "t200 t17").unwrap();
    assert!((c - (lsm[1][200] + lsm[2][17]) as f64).abs() < 1e-4);
}

/// SFT's loss, except that step `at_step` fails: with a NaN loss, or with an error as a malformed batch would give.
struct FailsAt {
    sft: Sft,
    at_step: usize,
    nan: bool,
}

impl Objective for FailsAt {
    type Example = Tokenized;
    fn name(&self) -> &'static str {
        "sft"
    }
    fn loss(&mut self, m: &Model, a: &Adapter, b: &[&Tokenized], at: StepInfo) -> kit::Result<StepOutput> {
        if at.step == self.at_step && !at.eval && !self.nan {
            return Err(kit::Error::Input(format!("bad batch at step {}", at.step)));
        }
        let mut out = self.sft.loss(m, a, b, at)?;
        if at.step == self.at_step && !at.eval {
            out.loss = (out.loss * f64::NAN)?;
        }
        Ok(out)
    }
}

/// Greedy continuation of a fixed prompt: (token ids, each token's log-prob).
fn greedy(model: &Model) -> (Vec<u32>, Vec<f32>) {
    let cfg = kit::generate::GenerationConfig {
        eos_token_ids: Some(vec![]),
        ..kit::generate::GenerationConfig::greedy(12)
    };
    let g = model
        .generate_ids(&[vec![5, 17, 42, 9]], &cfg, &mut |_| {})
        .unwrap()
        .remove(0);
    (g.token_ids, g.logprobs)
}

#[test]
fn a_run_that_fails_leaves_the_adapter_in_its_mode_and_generation_unchanged() {
    // Dropout 0.1: an adapter left in training mode would draw dropout masks (and take the exact kernels) in the
    // next generation, which would then differ. Failing at step 0 leaves the weights as they were.
    let (model, adapter) = setup();
    let b_nonzero: Vec<(candle_core::Tensor, candle_core::Tensor)> = adapter
        .vars()
        .chunks(2)
        .map(|ab| {
            (
                ab[0].as_tensor().clone(),
                (ab[1].as_tensor().ones_like().unwrap() * 0.05).unwrap(),
            )
        })
        .collect();
    adapter.state.set_weights(&b_nonzero).unwrap(); // B ≠ 0, so the adapter (and its dropout) changes the output
    let before_mode = adapter.mode();
    let before = greedy(&model);
    for nan in [true, false] {
        let dir = common::temp_dir(if nan { "loop-fail-nan" } else { "loop-fail-batch" });
        let a = TrainingArguments {
            eval_on_start: false,
            ..args(&dir, 3)
        };
        let objective = FailsAt {
            sft: Sft::new(&model),
            at_step: 0,
            nan,
        };
        let err = Trainer::new(&model, &adapter, objective, a)
            .with_data(examples(10, 9), vec![])
            .train()
            .unwrap_err()
            .to_string();
        assert!(err.contains(if nan { "NaN" } else { "bad batch" }), "{err}");
        assert_eq!(adapter.mode(), before_mode, "nan = {nan}: {err}");
        assert_eq!(
            greedy(&model),
            before,
            "nan = {nan}: generation after the failed run differs"
        );
    }
}

/// Preference pairs over the same 3-token prompts: chosen and rejected completions differ.
fn pairs(n: usize) -> Vec<kit::train::dpo::PairExample> {
    examples(n, 9)
        .into_iter()
        .zip(examples(n + 5, 8).into_iter().skip(5))
        .map(|(chosen, mut rejected)| {
            rejected.ids[..3].copy_from_slice(&chosen.ids[..3]);
            kit::train::dpo::PairExample {
                chosen,
                rejected,
                ref_logps: None,
                margin: None,
            }
        })
        .collect()
}

fn dpo_losses(bf16: bool) -> Vec<(f64, f64)> {
    let dir = common::temp_dir(&format!("loop-dpo-bf16-{bf16}"));
    let (model, adapter) = setup_with_dropout(0.0);
    common::fill_lora_b(&adapter);
    let a = TrainingArguments {
        bf16,
        learning_rate: 3e-2,
        ..args(&dir, 12)
    };
    let dpo = kit::train::dpo::Dpo::new(&model, Default::default());
    let out = Trainer::new(&model, &adapter, dpo, a)
        .with_data(pairs(8), pairs(4))
        .train()
        .unwrap();
    let of = |key: &str| -> Vec<(f64, f64)> {
        out.log_history
            .iter()
            .filter_map(|m| Some((m["step"], *m.get(key)?)))
            .collect()
    };
    [of("loss"), of("eval_loss")].concat()
}

/// `bf16` rounds the frozen products' factors to bf16 (sums in f32, LoRA in f32): a short DPO run's training and
/// held-out losses stay within 1e-3 of the exact f32 run at every step (bf16 keeps 8 bits: relative steps of 2⁻⁸
/// per factor), and they do differ from it, so the switch reaches the products.
#[test]
fn bf16_dpo_loss_curve_stays_within_tolerance_of_f32() {
    let exact = dpo_losses(false);
    let rounded = dpo_losses(true);
    assert_eq!(exact.len(), rounded.len());
    let mut largest = 0f64;
    for ((s, l), (s2, l2)) in exact.iter().zip(&rounded) {
        assert_eq!(s, s2);
        largest = largest.max((l - l2).abs());
    }
    assert!(
        largest <= 1e-3,
        "bf16 vs f32 DPO losses differ by {largest}: {exact:?} vs {rounded:?}"
    );
    assert!(largest > 0.0, "bf16 changed nothing: {exact:?}");
}

//! The frozen-base op: its input gradient against finite differences, and LoRA gradients through a quantized base
//! against the same computation on the dequantized dense base.
use crate::common;

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, Var};
use kit::lora;
use kit::model::{Decoder, FrozenWeight};
use kit::quant::{frozen_linear, quantize_weight};

/// f(x) = Σ (x Wᵀ ⊙ C) for the op, and its gradient; compared with central differences of the same function
/// computed in f64 on the dequantized weight. f is linear in x, so the differences are exact up to rounding.
fn check_input_gradient(w: FrozenWeight, w_dense: &Tensor) {
    let dev = Device::Cpu;
    let (out, inp) = w_dense.dims2().unwrap();
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, inp), &dev).unwrap()).unwrap();
    let c = Tensor::randn(0f32, 1.0, (3, out), &dev).unwrap();
    let f = (frozen_linear(x.as_tensor(), &w).unwrap() * &c)
        .unwrap()
        .sum_all()
        .unwrap();
    let grad = f
        .backward()
        .unwrap()
        .get(x.as_tensor())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let (w64, c64) = (w_dense.to_dtype(DType::F64).unwrap(), c.to_dtype(DType::F64).unwrap());
    let f64_at = |x: &Tensor| -> f64 {
        (x.matmul(&w64.t().unwrap()).unwrap() * &c64)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let x64 = x.as_tensor().to_dtype(DType::F64).unwrap();
    let eps = 1e-3;
    for (i, j) in [(0, 0), (1, inp / 2), (2, inp - 1), (0, 7)] {
        let mut bump = vec![vec![0f64; inp]; 3];
        bump[i][j] = eps;
        let bump = Tensor::new(bump, &dev).unwrap();
        let fd = (f64_at(&(&x64 + &bump).unwrap()) - f64_at(&(&x64 - &bump).unwrap())) / (2.0 * eps);
        assert!(
            (grad[i][j] as f64 - fd).abs() <= 1e-4 * fd.abs().max(1.0),
            "d f / d x[{i},{j}]: op {} vs finite difference {fd}",
            grad[i][j]
        );
    }
}

#[test]
fn input_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (48, 256), &dev).unwrap();
    check_input_gradient(FrozenWeight::Dense(w.clone()), &w);
    for dt in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::Q6K] {
        let q = QTensor::quantize(&w, dt).unwrap();
        let deq = q.dequantize(&dev).unwrap();
        check_input_gradient(FrozenWeight::Quantized(Arc::new(q)), &deq);
    }
}

#[test]
fn frozen_weights_get_no_gradient() {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (8, 32), &dev).unwrap();
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 32), &dev).unwrap()).unwrap();
    let grads = frozen_linear(x.as_tensor(), &FrozenWeight::Dense(w.clone()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(
        grads.get(&w).is_none(),
        "the frozen weight must not be in the gradient store"
    );
    assert_eq!(
        grads.get_ids().count(),
        grads.get_ids().filter(|id| **id != w.id()).count()
    );
}

fn tiny_llama() -> Decoder {
    common::tiny_decoder("llama")
}

fn llama_ids() -> Tensor {
    common::tiny_expected("llama")["plain.input_ids"]
        .to_dtype(DType::U32)
        .unwrap()
}

fn lora_grads(dec: &mut Decoder) -> Vec<Tensor> {
    let adapter = lora::load(dec, common::fixtures().join("lora").join("llama")).unwrap();
    adapter.set_training(true);
    let ids = llama_ids();
    let grads = common::next_token_loss(&dec.forward(&ids, None, None).unwrap(), &ids)
        .backward()
        .unwrap();
    adapter
        .vars()
        .iter()
        .map(|v| grads.get(v.as_tensor()).unwrap().clone())
        .collect()
}

/// The tiny Llama with its projections (not the head) quantized to `dt`, and the same model with those weights
/// dequantized to dense.
fn quantized_and_dequantized(dt: GgmlDType) -> (Decoder, Decoder) {
    let mut quantized = tiny_llama();
    let mut dense = tiny_llama();
    for (lq, ld) in quantized.linears_mut().into_iter().zip(dense.linears_mut()) {
        if lq.name == "lm_head" {
            continue;
        }
        let FrozenWeight::Dense(w) = &lq.weight else {
            unreachable!()
        };
        let q = quantize_weight(w, dt)
            .unwrap()
            .expect("64 columns fit 32-element blocks");
        ld.weight = FrozenWeight::Dense(q.dequantize(&Device::Cpu).unwrap());
        lq.weight = FrozenWeight::Quantized(q);
    }
    (quantized, dense)
}

#[test]
fn lora_gradients_through_a_quantized_base_equal_the_dequantized_dense_base() {
    for dt in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let (mut quantized, mut dense) = quantized_and_dequantized(dt);
        let (gq, gd) = (lora_grads(&mut quantized), lora_grads(&mut dense));
        for (a, b) in gq.iter().zip(&gd) {
            let d = common::rel_diff(a, b);
            assert!(d <= 1e-5, "{dt:?}: LoRA gradient differs by {d} (relative)");
        }
    }
}

/// Adapters on q_proj and v_proj only: in training, the layers without one must multiply exactly too — layer 0's
/// k_proj, whose input (the normed embeddings) carries no graph, included. The quantized model's training-mode logits
/// and loss are then its dequantized dense copy's. The 2×12 ids stay below the row count where kit dequantizes Q8_0
/// and Q4_0 anyway, so an inexact layer would run candle's kernel (8-bit activations) and show.
#[test]
fn partial_lora_targets_train_every_quantized_layer_exactly() {
    let ids = llama_ids();
    let cfg = lora::LoraConfig {
        r: 4,
        target_modules: lora::TargetModules::List(vec!["q_proj".into(), "v_proj".into()]),
        ..Default::default()
    };
    for dt in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let (mut quantized, mut dense) = quantized_and_dequantized(dt);
        let run = |dec: &mut Decoder| {
            let adapter = lora::attach(dec, &cfg).unwrap();
            common::fill_lora_b(&adapter);
            adapter.set_training(true);
            let train = dec.forward(&ids, None, None).unwrap();
            adapter.set_training(false);
            (train, dec.forward(&ids, None, None).unwrap())
        };
        let ((tq, iq), (td, id)) = (run(&mut quantized), run(&mut dense));
        let d = common::rel_diff(&tq, &td);
        assert!(d <= 1e-5, "{dt:?}: training logits differ by {d} (relative)");
        let (lq, ld) = (common::next_token_loss(&tq, &ids), common::next_token_loss(&td, &ids));
        let d = common::rel_diff(&lq, &ld);
        assert!(d <= 1e-5, "{dt:?}: training loss differs by {d} (relative)");
        // Inference takes the quantized kernel, which is not exact at these shapes: the check above can fail.
        let d = common::rel_diff(&iq, &id);
        assert!(
            d > 1e-5,
            "{dt:?}: inference logits differ by only {d}; the fast kernel was not taken"
        );
    }
}

#[test]
fn quantize_on_load_picks_a_block_size_that_fits() {
    let dev = Device::Cpu;
    let q = quantize_weight(&Tensor::zeros((4, 512), DType::F32, &dev).unwrap(), GgmlDType::Q4K)
        .unwrap()
        .unwrap();
    assert_eq!(q.dtype(), GgmlDType::Q4K);
    let q = quantize_weight(&Tensor::zeros((4, 96), DType::F32, &dev).unwrap(), GgmlDType::Q4K)
        .unwrap()
        .unwrap();
    assert_eq!(q.dtype(), GgmlDType::Q4_0);
    assert!(
        quantize_weight(&Tensor::zeros((4, 50), DType::F32, &dev).unwrap(), GgmlDType::Q4K)
            .unwrap()
            .is_none()
    );
}

#[test]
fn load_in_4bit_quantizes_the_projections_and_stays_close() {
    let mut dec = tiny_llama();
    let reference = tiny_llama();
    assert_eq!(
        dec.quantize_linears(GgmlDType::Q4K).unwrap(),
        21,
        "all projections but the head"
    );
    assert!(dec
        .linears()
        .iter()
        .all(|l| matches!(l.weight, FrozenWeight::Quantized(_)) == (l.name != "lm_head")));
    let ids = llama_ids();
    let (a, b) = (
        dec.forward(&ids, None, None).unwrap(),
        reference.forward(&ids, None, None).unwrap(),
    );
    // 4-bit weights (here Q4_0: 64 columns) move the logits a little, not a lot.
    let d = (a - &b)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let s = b.abs().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d > 0.0 && d < 0.1 * s, "mean |Δlogit| {d} vs mean |logit| {s}");
}

/// Two stacked 256-wide layers (K-quant blocks fit), LoRA on both with non-zero B: the first layer's LoRA gradients
/// pass through the second layer's frozen-op backward. Quantized base = its dequantized dense copy, tightly.
#[test]
fn k_quant_base_gives_the_lora_gradients_of_its_dequantized_dense_copy() {
    let dev = Device::Cpu;
    let w1 = Tensor::randn(0f32, 0.05, (256, 256), &dev).unwrap();
    let w2 = Tensor::randn(0f32, 0.05, (48, 256), &dev).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 256), &dev).unwrap();
    let c = Tensor::randn(0f32, 1.0, (2, 3, 48), &dev).unwrap();
    let grads_with = |quantized: bool, dt: GgmlDType| -> Vec<Tensor> {
        let weight = |w: &Tensor| {
            let q = Arc::new(QTensor::quantize(w, dt).unwrap());
            if quantized {
                FrozenWeight::Quantized(q)
            } else {
                FrozenWeight::Dense(q.dequantize(&dev).unwrap())
            }
        };
        let mut l1 = kit::model::Linear::new(weight(&w1), None, "model.layers.0.mlp.up_proj");
        let mut l2 = kit::model::Linear::new(weight(&w2), None, "model.layers.0.mlp.down_proj");
        let cfg = lora::LoraConfig {
            r: 4,
            init_seed: 3,
            ..Default::default()
        };
        let adapter = lora::attach_to([&mut l1, &mut l2], &cfg).unwrap();
        for (k, (_, _, b)) in adapter.params().iter().enumerate() {
            b.set(&(Tensor::ones(b.shape(), DType::F32, &dev).unwrap() * (0.01 * (k + 1) as f64)).unwrap())
                .unwrap();
        }
        adapter.set_training(true);
        let y = l2.forward(&l1.forward(&x).unwrap().silu().unwrap()).unwrap();
        let grads = (y * &c).unwrap().sum_all().unwrap().backward().unwrap();
        adapter
            .vars()
            .iter()
            .map(|v| grads.get(v.as_tensor()).unwrap().clone())
            .collect()
    };
    for dt in [GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q8_0] {
        let (gq, gd) = (grads_with(true, dt), grads_with(false, dt));
        assert_eq!(gq.len(), 4);
        for (a, b) in gq.iter().zip(&gd) {
            let d = common::rel_diff(a, b);
            assert!(d <= 1e-5, "{dt:?}: LoRA gradient differs by {d} (relative)");
        }
    }
}

/// Exact mode (`Adapter::set_exact`, what a reward model scores with): a Q8_0 base multiplies as its dequantized
/// dense copy, whose product does not depend on the row count, so a sequence scores the same alone as among many
/// rows; without it, few rows take candle's kernel, which rounds the activations to 8 bits.
#[test]
fn exact_mode_gives_the_dense_dequantized_forward_at_any_batch_size() {
    let mut dec = tiny_llama();
    dec.quantize_linears(GgmlDType::Q8_0).unwrap();
    let mut dense = dec.clone();
    for l in dense.linears_mut() {
        l.weight = FrozenWeight::Dense(kit::quant::dense_weight(&l.weight, DType::F32).unwrap());
    }
    let cfg = kit::lora::LoraConfig::default();
    let adapter = lora::attach(&mut dec, &cfg).unwrap();
    let _dense_adapter = lora::attach(&mut dense, &cfg).unwrap(); // B = 0: the base alone, as in `dec`
    let ids = llama_ids().narrow(0, 0, 1).unwrap(); // one sequence: few rows, the kernel's side of the switch
    let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let want = dense.forward(&ids, None, None).unwrap();
    let fast = dec.forward(&ids, None, None).unwrap();
    adapter.set_exact(true);
    let exact = dec.forward(&ids, None, None).unwrap();
    // Forty copies of the row: the many-rows side.
    let many = ids.repeat((40, 1)).unwrap();
    let exact_many = dec.forward(&many, None, None).unwrap().narrow(0, 0, 1).unwrap();
    assert!(
        max_diff(&exact, &want) < 1e-4,
        "exact vs dense {}",
        max_diff(&exact, &want)
    );
    assert!(max_diff(&exact_many, &exact) < 1e-4, "batch changed the exact forward");
    assert!(
        max_diff(&fast, &want) > 1e-4,
        "the fast path equals the dense one: this tests nothing"
    );
}

#[test]
fn lora_gradients_under_dropout_match_finite_differences() {
    // Training mode runs each adapted projection as one op with a closed-form backward (`Linear::forward`); with
    // dropout the mask must enter ∂A and ∂x. The dropout stream is reseeded before every forward, so the loss is a
    // fixed smooth function of A and B, and its central differences are the oracle. The same with gradient
    // checkpointing, whose recomputed layers must draw the masks of their first run.
    for checkpointing in [false, true] {
        dropout_gradients_match_finite_differences(checkpointing);
    }
}

fn dropout_gradients_match_finite_differences(checkpointing: bool) {
    let mut model = common::tiny_model("llama");
    let adapter = model
        .attach_lora(&lora::LoraConfig {
            r: 4,
            lora_alpha: 32.0,
            lora_dropout: 0.3,
            ..Default::default()
        })
        .unwrap();
    common::fill_lora_b(&adapter);
    adapter.set_training(true);
    let _scope = adapter.checkpointing_scope(checkpointing);
    let ids = llama_ids();
    let loss = || {
        adapter.reseed_dropout(7).unwrap();
        common::next_token_loss(&model.decoder.forward(&ids, None, None).unwrap(), &ids)
    };
    let grads = adapter.backward(&loss()).unwrap();
    let vars = adapter.vars();
    // A and B of the first layer's q_proj and of a later down_proj.
    for v in [&vars[0], &vars[1], &vars[vars.len() - 2], &vars[vars.len() - 1]] {
        let g = grads
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let base = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // The two largest gradients of each (f32 differences of a loss near 5 resolve ~1e-5 at this step).
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &i in &order[..2] {
            let at = |delta: f32| {
                let mut w = base.clone();
                w[i] += delta;
                v.set(&Tensor::from_vec(w, v.shape(), &Device::Cpu).unwrap()).unwrap();
                let l = loss().to_scalar::<f32>().unwrap();
                v.set(&Tensor::from_vec(base.clone(), v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                l
            };
            let eps = 5e-2;
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (g[i] - fd).abs() <= 2e-5 + 1e-2 * fd.abs(),
                "element {i}: closed form {} vs {fd}",
                g[i]
            );
        }
    }
}

//! PEFT's module selection (list/regex targets, exclude_modules, layers_to_transform) and per-module rank/α
//! (rank_pattern, alpha_pattern, rsLoRA), a module-level case without a decoder, seeded dropout, and PEFT options kit
//! refuses. Fixtures: `tests/oracle/make_lora_pattern_fixtures.py` (PEFT 0.21).
use crate::common;

use candle_core::{DType, Device, Tensor, Var};
use common::rel_diff;
use kit::lora;
use kit::model::{FrozenWeight, Linear};

fn case_dir(case: &str) -> std::path::PathBuf {
    common::fixtures().join("lora").join(case)
}

fn load_st(path: std::path::PathBuf) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn expected_modules(case: &str) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(case_dir(case).join("modules.json")).unwrap()).unwrap()
}

/// Every LoRA gradient equals PEFT's (≤ 1e-4 relative).
fn check_grads(case: &str, adapter: &lora::Adapter, grads: &candle_core::backprop::GradStore) {
    let want = load_st(case_dir(case).join("expected.safetensors"));
    common::assert_lora_grads(case, adapter, grads, &want);
}

#[test]
fn peft_module_selection_and_rank_patterns_give_peft_results() {
    for (case, model) in [("patterns_llama", "llama"), ("regex_qwen2", "qwen2")] {
        let mut dec = common::tiny_decoder(model);
        let adapter = lora::load(&mut dec, case_dir(case)).unwrap();
        adapter.set_training(true);
        let mut got: Vec<String> = adapter.params().iter().map(|(n, _, _)| n.clone()).collect();
        got.sort();
        assert_eq!(got, expected_modules(case), "{case}: adapted modules");
        let want = load_st(case_dir(case).join("expected.safetensors"));
        let ids = common::tiny_expected(model)["plain.input_ids"]
            .to_dtype(DType::U32)
            .unwrap();
        let logits = dec.forward(&ids, None, None).unwrap();
        assert!(rel_diff(&logits, &want["logits"]) <= 1e-4, "{case}: logits");
        let loss = common::next_token_loss(&logits, &ids);
        let (l, w) = (
            loss.to_scalar::<f32>().unwrap(),
            want["loss"].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0],
        );
        assert!((l - w).abs() <= 1e-4 * w.abs(), "{case}: loss {l} vs {w}");
        check_grads(case, &adapter, &loss.backward().unwrap());
    }
}

#[test]
fn patterns_survive_a_kit_save_and_reload() {
    let mut dec = common::tiny_decoder("llama");
    let adapter = lora::load(&mut dec, case_dir("patterns_llama")).unwrap();
    let ids = common::tiny_expected("llama")["plain.input_ids"]
        .to_dtype(DType::U32)
        .unwrap();
    let before = dec.forward(&ids, None, None).unwrap();
    let out = common::temp_dir("lora-patterns");
    adapter.save(&out).unwrap();
    let mut dec2 = common::tiny_decoder("llama");
    let again = lora::load(&mut dec2, &out).unwrap();
    assert_eq!(again.config, adapter.config);
    assert_eq!(rel_diff(&dec2.forward(&ids, None, None).unwrap(), &before), 0.0);
}

fn linear(base: &std::collections::HashMap<String, Tensor>, name: &str) -> Linear {
    let w = FrozenWeight::Dense(base[&format!("{name}.weight")].clone());
    Linear::new(w, base.get(&format!("{name}.bias")).cloned(), name)
}

#[test]
fn module_level_adapters_without_a_decoder_match_peft() {
    let base = load_st(case_dir("mlp").join("base.safetensors"));
    let want = load_st(case_dir("mlp").join("expected.safetensors"));
    let (mut gate, mut up, mut down) = (
        linear(&base, "gate_proj"),
        linear(&base, "up_proj"),
        linear(&base, "down_proj"),
    );
    let adapter = lora::load_into([&mut gate, &mut up, &mut down], case_dir("mlp")).unwrap();
    assert_eq!(adapter.params().len(), 3);
    assert_eq!(
        adapter
            .state
            .weights(down.lora.as_ref().unwrap().slot)
            .unwrap()
            .0
            .dims(),
        [5, 24],
        "rank_pattern gives down_proj r = 5"
    );
    adapter.set_training(true);
    let x = &base["x"];
    let h = (gate.forward(x).unwrap().silu().unwrap() * up.forward(x).unwrap()).unwrap();
    let y = down.forward(&h).unwrap();
    assert!(
        rel_diff(&y, &want["y"]) <= 1e-4,
        "outputs differ by {}",
        rel_diff(&y, &want["y"])
    );
    let loss = (&y * &base["c"]).unwrap().sum_all().unwrap();
    check_grads("mlp", &adapter, &loss.backward().unwrap());
}

/// A square adapter with A = B = I and scale 1 on a zero base: the layer's output is the adapter's input after
/// dropout, so the masks can be read off directly.
fn identity_adapter(p: f32, seed: u64) -> (Linear, lora::Adapter) {
    let n = 8;
    let mut l = Linear::new(
        FrozenWeight::Dense(Tensor::zeros((n, n), DType::F32, &Device::Cpu).unwrap()),
        None,
        "proj",
    );
    let cfg = lora::LoraConfig {
        r: n,
        lora_alpha: n as f64,
        lora_dropout: p,
        target_modules: lora::TargetModules::List(vec!["proj".into()]),
        init_seed: seed,
        ..Default::default()
    };
    let adapter = lora::attach_to([&mut l], &cfg).unwrap();
    let eye = Tensor::eye(n, DType::F32, &Device::Cpu).unwrap();
    let (_, a, b) = &adapter.params()[0];
    a.set(&eye).unwrap();
    b.set(&eye).unwrap();
    (l, adapter)
}

#[test]
fn dropout_masks_the_adapter_input_in_training_only_and_is_seeded() {
    let x = (Tensor::rand(0f32, 1.0, (1000, 8), &Device::Cpu).unwrap() + 1.0).unwrap();
    let (l, adapter) = identity_adapter(0.25, 5);
    // Inference: no dropout, the adapter passes x through exactly.
    assert_eq!(rel_diff(&l.forward(&x).unwrap(), &x), 0.0);
    adapter.set_training(true);
    let y = l.forward(&x).unwrap();
    let ratio = (&y / &x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dropped = ratio.iter().filter(|r| **r == 0.0).count();
    assert!(
        ratio.iter().all(|r| *r == 0.0 || (r - 1.0 / 0.75).abs() < 1e-6),
        "kept values are scaled by 1/(1-p)"
    );
    // 8000 Bernoulli(0.25) draws: mean 2000, sd ≈ 39.
    assert!((1800..2200).contains(&dropped), "{dropped} of 8000 dropped at p = 0.25");
    // The next call draws a new mask; the same seed gives the same masks again.
    assert!(rel_diff(&l.forward(&x).unwrap(), &y) > 0.0);
    let (l2, adapter2) = identity_adapter(0.25, 5);
    adapter2.set_training(true);
    assert_eq!(rel_diff(&l2.forward(&x).unwrap(), &y), 0.0);
    // The gradient reaches A and B only through the kept inputs: d Σy / d B = (A · dropout(x))ᵀ summed.
    let xv = Var::from_tensor(&x).unwrap();
    let (l3, adapter3) = identity_adapter(0.25, 9);
    adapter3.set_training(true);
    let y3 = l3.forward(xv.as_tensor()).unwrap();
    let gx = y3.sum_all().unwrap().backward().unwrap();
    let gx = gx.get(xv.as_tensor()).unwrap();
    // y = mask ⊙ x ⇒ dΣy/dx = mask = y / x.
    assert!(rel_diff(gx, &(&y3 / &x).unwrap()) <= 1e-6);
}

#[test]
fn renewed_vars_keep_the_values_and_are_the_ones_the_layer_trains() {
    // A = B = I, scale 1, zero base: y = x, and for L = Σ y², dL/dB = 2 y (A x)ᵀ = 2 xᵀx summed over rows, likewise A.
    let x = Tensor::rand(-1f32, 1.0, (4, 8), &Device::Cpu).unwrap();
    let (l, adapter) = identity_adapter(0.0, 1);
    adapter.set_training(true);
    let grads = |vars: &[Var]| -> Vec<Option<Vec<Vec<f32>>>> {
        let g = l
            .forward(&x)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        vars.iter()
            .map(|v| g.get(v.as_tensor()).map(|t| t.to_vec2().unwrap()))
            .collect()
    };
    let old = adapter.vars();
    let before = grads(&old);
    let want = (x.t().unwrap().matmul(&x).unwrap() * 2.0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(before, vec![Some(want.clone()), Some(want)], "the closed form");

    adapter.renew_vars().unwrap();
    let new = adapter.vars();
    for (o, n) in old.iter().zip(&new) {
        assert_ne!(o.id(), n.id(), "a new tensor");
        assert_eq!(
            o.to_vec2::<f32>().unwrap(),
            n.to_vec2::<f32>().unwrap(),
            "the same values"
        );
    }
    assert_eq!(
        grads(&new),
        before,
        "the layer trains the renewed vars, with the same gradients"
    );
    assert!(
        grads(&old).iter().all(Option::is_none),
        "the old vars are out of the graph"
    );
    // Only the renewed vars drive the layer: clearing an old one changes nothing, clearing a new one does.
    old[1]
        .set(&Tensor::zeros((8, 8), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(rel_diff(&l.forward(&x).unwrap(), &x), 0.0);
    new[1]
        .set(&Tensor::zeros((8, 8), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(common::max_abs(&l.forward(&x).unwrap()), 0.0);
}

/// Copy the llama fixture with `edit` applied to its adapter_config.json, and return the load error.
fn load_error(edit: impl Fn(&mut serde_json::Value)) -> String {
    let src = case_dir("llama");
    let d = common::temp_dir("lora-unsupported");
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        d.join("adapter_model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(d.join("adapter_config.json"), cfg.to_string()).unwrap();
    lora::load(&mut common::tiny_decoder("llama"), &d)
        .unwrap_err()
        .to_string()
}

#[test]
fn peft_options_kit_does_not_implement_are_refused_by_name() {
    for (key, value) in [
        ("use_dora", serde_json::json!(true)),
        ("lora_bias", serde_json::json!(true)),
        ("fan_in_fan_out", serde_json::json!(true)),
        ("modules_to_save", serde_json::json!(["lm_head"])),
        ("init_lora_weights", serde_json::json!("pissa_niter_4")),
        ("bias", serde_json::json!("all")),
    ] {
        let e = load_error(|c| c[key] = value.clone());
        assert!(e.contains("adapter_config.json") && e.contains(key), "{key}: {e}");
    }
    let e = load_error(|c| c["target_modules"] = serde_json::json!("(q_proj"));
    assert!(e.contains("not a valid regex"), "{e}");
    // A string target is a whole-name regex in PEFT: "q_proj" alone matches nothing in a decoder.
    let e = load_error(|c| c["target_modules"] = serde_json::json!("q_proj"));
    assert!(e.contains("`q_proj` matches no layer"), "{e}");
}

/// A kit-written adapter using every selection feature a string target allows: regex target, exclude list,
/// rank_pattern, alpha_pattern, rsLoRA; seeded A (kit's init) and seeded non-zero B.
fn kit_adapter_with_patterns(dir: &std::path::Path) -> (kit::model::Decoder, lora::Adapter) {
    let mut dec = common::tiny_decoder("llama");
    let cfg: lora::LoraConfig = serde_json::from_value(serde_json::json!({
        "r": 4, "lora_alpha": 16, "use_rslora": true, "init_seed": 13,
        "target_modules": r".*\.(0|2)\..*(q_proj|down_proj|gate_proj)",
        "exclude_modules": ["layers.2.mlp.gate_proj"],
        "rank_pattern": {"down_proj": 2},
        "alpha_pattern": {"q_proj": 4},
    }))
    .unwrap();
    let mut adapter = lora::attach(&mut dec, &cfg).unwrap();
    adapter.base_model_name_or_path = "tests/fixtures/tiny/llama".into();
    common::fill_lora_b(&adapter);
    adapter.save(dir).unwrap();
    (dec, adapter)
}

#[test]
fn kit_written_patterns_load_in_peft() {
    // The committed adapter is what kit writes (KIT_WRITE_FIXTURES=1 writes it there, see `common::write_fixture_if_asked`); PEFT loaded it and recorded
    // its logits and per-module rank/scaling (tests/oracle/check_kit_adapter_in_peft.py DIR).
    let committed = case_dir("kit_written_patterns");
    let dir = common::temp_dir("kit-adapter-patterns");
    let (dec, adapter) = kit_adapter_with_patterns(&dir);
    common::write_fixture_if_asked(
        &dir,
        &committed,
        "python tests/oracle/check_kit_adapter_in_peft.py tests/fixtures/lora/kit_written_patterns",
    );
    let (ours, theirs) = (
        load_st(dir.join("adapter_model.safetensors")),
        load_st(committed.join("adapter_model.safetensors")),
    );
    assert_eq!(ours.len(), theirs.len());
    for (k, t) in &ours {
        assert_eq!(rel_diff(t, &theirs[k]), 0.0, "{k}");
    }
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed.join("peft_record.json")).unwrap()).unwrap();
    let peft_modules = record["modules"].as_object().unwrap();
    assert_eq!(
        peft_modules.len(),
        adapter.params().len(),
        "PEFT adapted the same number of modules"
    );
    for l in dec.linears() {
        match (&l.lora, peft_modules.get(&l.name)) {
            (None, None) => {}
            (Some(lora), Some(m)) => {
                assert_eq!(lora.rank as u64, m["r"].as_u64().unwrap(), "{}: rank", l.name);
                assert!(
                    (lora.scale - m["scaling"].as_f64().unwrap()).abs() < 1e-12,
                    "{}: scaling",
                    l.name
                );
            }
            (ours, theirs) => panic!(
                "{}: kit adapter {} vs PEFT {}",
                l.name,
                ours.is_some(),
                theirs.is_some()
            ),
        }
    }
    let peft = load_st(committed.join("peft_logits.safetensors"));
    let ids = common::tiny_expected("llama")["plain.input_ids"]
        .to_dtype(DType::U32)
        .unwrap();
    let d = rel_diff(&dec.forward(&ids, None, None).unwrap(), &peft["logits"]);
    assert!(d <= 1e-5, "PEFT's logits with kit's adapter differ by {d}");
}

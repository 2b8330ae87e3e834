//! LoRA against PEFT: adapters PEFT saved load into kit and give PEFT's logits, loss and LoRA gradients
//! (≤ 1e-4 relative, f32) on every family's tiny model. Fixtures: `tests/oracle/make_lora_fixtures.py`.
use crate::common;

use candle_core::{DType, Device, Tensor};
use kit::lora;
use kit::model::Decoder;

fn tiny(name: &str) -> Decoder {
    common::tiny_decoder(name)
}

fn input(name: &str) -> Tensor {
    common::tiny_expected(name)["plain.input_ids"]
        .to_dtype(DType::U32)
        .unwrap()
}

/// Mean next-token cross-entropy and the logits.
fn loss(dec: &Decoder, ids: &Tensor) -> (Tensor, Tensor) {
    let logits = dec.forward(ids, None, None).unwrap();
    (common::next_token_loss(&logits, ids), logits)
}

use common::rel_diff;

#[test]
fn peft_adapters_give_peft_logits_loss_and_gradients() {
    for name in ["llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3"] {
        let mut dec = tiny(name);
        let dir = common::fixtures().join("lora").join(name);
        let adapter = lora::load(&mut dec, &dir).unwrap();
        adapter.set_training(true);
        assert_eq!(adapter.params().len(), 3 * 7, "{name}: one adapter per projection");
        let want = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let ids = input(name);
        let (l, logits) = loss(&dec, &ids);
        assert!(rel_diff(&logits, &want["logits"]) <= 1e-4, "{name}: logits");
        let (got, exp) = (
            l.to_scalar::<f32>().unwrap(),
            want["loss"].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0],
        );
        assert!((got - exp).abs() <= 1e-4 * exp.abs(), "{name}: loss {got} vs {exp}");
        let grads = l.backward().unwrap();
        common::assert_lora_grads(name, &adapter, &grads, &want);
        // Switching the adapter off gives the base model back, exactly (inference mode: same fused kernels).
        adapter.set_training(false);
        let base = tiny(name).forward(&ids, None, None).unwrap();
        let off = adapter.with_disabled(|| dec.forward(&ids, None, None).unwrap());
        assert_eq!(rel_diff(&off, &base), 0.0, "{name}: adapter off");
    }
}

#[test]
fn gradient_checkpointing_gives_peft_gradients() {
    // Layers recomputed in the backward (kit::model::checkpoint): the loss and every LoRA gradient are PEFT's, for
    // every family, once the recomputed layers' gradients are added (`Adapter::backward`).
    for name in ["llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3"] {
        let mut dec = tiny(name);
        let dir = common::fixtures().join("lora").join(name);
        let adapter = lora::load(&mut dec, &dir).unwrap();
        adapter.set_training(true);
        let _on = adapter.checkpointing_scope(true);
        let want = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let (l, _) = loss(&dec, &input(name));
        let exp = want["loss"].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!(
            (l.to_scalar::<f32>().unwrap() - exp).abs() <= 1e-4 * exp.abs(),
            "{name}: loss"
        );
        let grads = adapter.backward(&l).unwrap();
        common::assert_lora_grads(name, &adapter, &grads, &want);
    }
}

#[test]
fn saved_adapters_round_trip_and_merge() {
    let mut dec = tiny("llama");
    let adapter = lora::load(&mut dec, common::fixtures().join("lora").join("llama")).unwrap();
    let ids = input("llama");
    let before = dec.forward(&ids, None, None).unwrap();
    let out = common::temp_dir("lora-save");
    adapter.save(&out).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    let mut dec2 = tiny("llama");
    lora::load(&mut dec2, &out).unwrap();
    assert_eq!(rel_diff(&dec2.forward(&ids, None, None).unwrap(), &before), 0.0);
    // Merging folds B·A·scale into the weights: same logits without adapters.
    lora::merge(&mut dec2).unwrap();
    assert!(dec2.linears().iter().all(|l| l.lora.is_none()));
    assert!(rel_diff(&dec2.forward(&ids, None, None).unwrap(), &before) <= 1e-5);
}

#[test]
fn bad_adapters_and_configs_name_what_does_not_fit() {
    let mut dec = tiny("llama");
    let cfg = lora::LoraConfig {
        r: 0,
        ..Default::default()
    };
    assert!(lora::attach(&mut dec, &cfg).unwrap_err().to_string().contains("r = 0"));
    let cfg = lora::LoraConfig {
        target_modules: lora::TargetModules::List(vec!["q_proj".into(), "query".into()]),
        ..Default::default()
    };
    let e = lora::attach(&mut dec, &cfg).unwrap_err().to_string();
    assert!(e.contains("`query`") && e.contains("q_proj"), "{e}");

    // An adapter trained for another model (qwen3 has other shapes? same dims here, so use a rank change).
    let d = common::temp_dir("lora-bad");
    let src = common::fixtures().join("lora").join("llama");
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        d.join("adapter_model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(src.join("adapter_config.json"))
        .unwrap()
        .replace("\"r\": 4", "\"r\": 8");
    std::fs::write(d.join("adapter_config.json"), cfg).unwrap();
    let e = lora::load(&mut tiny("llama"), &d).unwrap_err().to_string();
    assert!(e.contains("lora_A.weight") && e.contains("does not fit"), "{e}");
    let cfg = std::fs::read_to_string(src.join("adapter_config.json"))
        .unwrap()
        .replace("\"k_proj\"", "\"kk_proj\"");
    std::fs::write(d.join("adapter_config.json"), cfg).unwrap();
    let e = lora::load(&mut tiny("llama"), &d).unwrap_err().to_string();
    assert!(e.contains("kk_proj"), "{e}");
}

#[test]
fn all_linear_targets_every_projection_but_the_head_and_counts_like_peft() {
    let mut dec = tiny("llama");
    let adapter = lora::attach(
        &mut dec,
        &lora::LoraConfig {
            r: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(adapter.params().len(), 21);
    assert!(adapter.params().iter().all(|(n, _, _)| n != "lm_head"));
    // Per layer: q,o: 2·(64+64); k,v: 2·(64+32); gate,up: 2·(64+128); down: 2·(128+64) → 2·(128·2 + 96·2 + 192·3) = 2048.
    assert_eq!(adapter.num_trainable(), 3 * 2048);
    assert!(
        adapter
            .summary(&dec)
            .starts_with("trainable params: 6,144 || all params: "),
        "{}",
        adapter.summary(&dec)
    );
    // Fresh adapters start at B = 0: the model is unchanged.
    let ids = input("llama");
    assert_eq!(
        rel_diff(
            &dec.forward(&ids, None, None).unwrap(),
            &tiny("llama").forward(&ids, None, None).unwrap()
        ),
        0.0
    );
}

/// A non-trivial adapter written by kit: seeded A (kit's init) and seeded non-zero B.
fn kit_adapter(dir: &std::path::Path) -> lora::Adapter {
    let mut dec = tiny("llama");
    let cfg = lora::LoraConfig {
        r: 4,
        lora_alpha: 16.0,
        target_modules: lora::TargetModules::List(vec!["q_proj".into(), "v_proj".into(), "down_proj".into()]),
        init_seed: 11,
        ..Default::default()
    };
    let mut adapter = lora::attach(&mut dec, &cfg).unwrap();
    adapter.base_model_name_or_path = "tests/fixtures/tiny/llama".into();
    common::fill_lora_b(&adapter);
    adapter.save(dir).unwrap();
    adapter
}

#[test]
fn adapters_kit_writes_load_in_peft() {
    // The committed adapter is exactly what kit writes (KIT_WRITE_FIXTURES=1 writes it there, see `common::write_fixture_if_asked`), and PEFT, loading it,
    // computed the logits recorded next to it by tests/oracle/check_kit_adapter_in_peft.py.
    let committed = common::fixtures().join("lora").join("kit_written");
    let dir = common::temp_dir("kit-adapter");
    kit_adapter(&dir);
    common::write_fixture_if_asked(&dir, &committed, "python tests/oracle/check_kit_adapter_in_peft.py");
    let ours = candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let theirs = candle_core::safetensors::load(committed.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (k, t) in &ours {
        assert_eq!(rel_diff(t, &theirs[k]), 0.0, "{k}");
    }
    let peft = candle_core::safetensors::load(committed.join("peft_logits.safetensors"), &Device::Cpu).unwrap();
    let mut dec = tiny("llama");
    lora::load(&mut dec, &committed).unwrap();
    let got = dec.forward(&input("llama"), None, None).unwrap();
    let d = rel_diff(&got, &peft["logits"]);
    assert!(d <= 1e-5, "PEFT's logits with kit's adapter differ by {d}");
    assert!(
        rel_diff(
            &peft["logits"],
            &tiny("llama").forward(&input("llama"), None, None).unwrap()
        ) > 1e-3,
        "the adapter changes the model"
    );
}

/// `Model::attach_lora` records what the model was loaded from, so that the saved adapter names its base as PEFT's
/// does (PEFT writes the hub id or path given to `from_pretrained`). `kit grpo --reward_model` loads the reward
/// model's base from that field, and loading the adapter keeps it.
#[test]
fn attach_lora_records_the_base_model_in_adapter_config() {
    use kit::model::{LoadOptions, Model};
    let dir = common::tiny_model_dir("llama");
    let spec = dir.to_str().unwrap();
    let mut model = Model::load(spec, &LoadOptions::default()).unwrap();
    let adapter = model.attach_lora(&lora::LoraConfig::default()).unwrap();
    let out = common::temp_dir("lora-base");
    adapter.save(&out).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["base_model_name_or_path"], spec);
    let mut base = Model::load(
        cfg["base_model_name_or_path"].as_str().unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        lora::load(&mut base.decoder, &out).unwrap().base_model_name_or_path,
        spec
    );
}

/// Every layer follows the one adapter's switches, so a second adapter is refused until the first is merged.
#[test]
fn a_model_carries_one_adapter_until_it_is_merged() {
    let mut dec = tiny("llama");
    let q = lora::LoraConfig {
        target_modules: lora::TargetModules::List(vec!["q_proj".into()]),
        ..Default::default()
    };
    lora::attach(&mut dec, &q).unwrap();
    assert!(dec.linears().iter().all(|l| l.adapter.is_some()));
    let v = lora::LoraConfig {
        target_modules: lora::TargetModules::List(vec!["v_proj".into()]),
        ..Default::default()
    };
    let e = lora::attach(&mut dec, &v).unwrap_err().to_string();
    assert!(e.contains("already has an adapter"), "{e}");
    lora::merge(&mut dec).unwrap();
    assert!(dec.linears().iter().all(|l| l.adapter.is_none() && l.lora.is_none()));
    lora::attach(&mut dec, &v).unwrap();
}

//! DPO's reference pass shared by several runs (notebook 07): pairs scored once and then label-swapped equal the
//! swapped rows scored directly, examples that carry reference log-probs keep them (TRL's `ref_chosen_logps`
//! columns), and a trainer built from scored examples trains exactly as one built from the rows.
use crate::common;

use kit::data::{swap_labels, Origin, PreferenceRow, Turns};
use kit::lora::{Adapter, LoraConfig};
use kit::model::Model;
use kit::train::dpo::{reference_scored, Dpo, DpoConfig, DpoReference};
use kit::train::{Trainer, TrainingArguments};

fn setup() -> (Model, Adapter) {
    let mut model = common::tiny_model("llama");
    let adapter = model
        .attach_lora(&LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            ..Default::default()
        })
        .unwrap();
    // A fresh adapter has B = 0; non-zero B makes the reference differ from the base and the A gradients live.
    common::fill_lora_b(&adapter);
    (model, adapter)
}

/// Six pairs in the tiny tokenizer's words: a shared prompt, chosen and rejected of different lengths.
fn rows() -> Vec<(Origin, PreferenceRow)> {
    (0..6)
        .map(|i| {
            let origin = Origin {
                path: "pairs.jsonl".into(),
                line: i + 1,
            };
            let row = PreferenceRow {
                prompt: Turns::Text(format!("t{} t11 t12", 10 + i)),
                chosen: Turns::Text(format!("t{} t{}", 20 + i, 30 + i)),
                rejected: Turns::Text(format!("t{} t{} t{}", 40 + i, 50 + i, 60 + i)),
                margin: None,
            };
            (origin, row)
        })
        .collect()
}

fn config(dir: &std::path::Path) -> DpoConfig {
    DpoConfig {
        args: TrainingArguments {
            output_dir: dir.to_path_buf(),
            learning_rate: 3e-2,
            per_device_train_batch_size: 2,
            per_device_eval_batch_size: 4,
            max_steps: Some(3),
            logging_steps: 1,
            eval_steps: Some(3),
            disable_tqdm: true,
            ..Default::default()
        },
        reference: DpoReference::Initial,
        ..Default::default()
    }
}

#[test]
fn swapping_scored_pairs_equals_scoring_the_swapped_rows() {
    let (model, adapter) = setup();
    let cfg = config(&common::temp_dir("dpo-ref-swap"));
    let scored = reference_scored(&model, &adapter, &rows(), &cfg).unwrap();
    let (swapped_rows, marks) = swap_labels(&rows(), 0.5, 3);
    let direct = reference_scored(&model, &adapter, &swapped_rows, &cfg).unwrap();
    let (swapped_scored, marks_scored) = swap_labels(&scored, 0.5, 3);
    assert_eq!(marks, marks_scored);
    assert_eq!(marks.iter().filter(|&&m| m).count(), 3);
    for ((d, s), (plain, &m)) in direct.iter().zip(&swapped_scored).zip(scored.iter().zip(&marks)) {
        assert_eq!((&d.chosen.ids, &d.rejected.ids), (&s.chosen.ids, &s.rejected.ids));
        let (dc, dr) = d.ref_logps.unwrap();
        let (sc, sr) = s.ref_logps.unwrap();
        assert!(
            (dc - sc).abs() < 1e-5 && (dr - sr).abs() < 1e-5,
            "{:?} vs {:?}",
            d.ref_logps,
            s.ref_logps
        );
        // The swap reached the pair: a swapped row's chosen is the unswapped row's rejected.
        let (pc, pr) = plain.ref_logps.unwrap();
        assert_eq!((sc, sr) == (pr, pc), m);
        assert_ne!(pc, pr);
    }
}

#[test]
fn precompute_keeps_reference_log_probs_an_example_carries() {
    let (model, adapter) = setup();
    let cfg = config(&common::temp_dir("dpo-ref-keep"));
    let fresh = reference_scored(&model, &adapter, &rows(), &cfg).unwrap();
    let mut carried = fresh.clone();
    carried[0].ref_logps = Some((-1.0, -2.0));
    carried[1].ref_logps = None;
    Dpo::new(&model, cfg.clone())
        .precompute(&model, &adapter, &mut carried, 4)
        .unwrap();
    assert_eq!(carried[0].ref_logps, Some((-1.0, -2.0)));
    let (a, b) = (carried[1].ref_logps.unwrap(), fresh[1].ref_logps.unwrap());
    assert!((a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6);
}

#[test]
fn a_trainer_from_scored_examples_trains_as_one_from_rows() {
    let run = |from_examples: bool| {
        let (model, adapter) = setup();
        let cfg = config(&common::temp_dir(&format!("dpo-ref-train-{from_examples}")));
        let (train, eval) = (rows()[..4].to_vec(), rows()[4..].to_vec());
        let mut trainer = if from_examples {
            let train = reference_scored(&model, &adapter, &train, &cfg).unwrap();
            let eval = reference_scored(&model, &adapter, &eval, &cfg).unwrap();
            Trainer::from_examples(&model, &adapter, cfg, train, eval).unwrap()
        } else {
            Trainer::from_rows(&model, &adapter, cfg, &train, &eval).unwrap()
        };
        let out = trainer.train().unwrap();
        let losses: Vec<(f64, f64)> = out
            .log_history
            .iter()
            .filter_map(|m| Some((*m.get("loss").or(m.get("eval_loss"))?, m["step"])))
            .collect();
        losses
    };
    let (rows_run, examples_run) = (run(false), run(true));
    assert_eq!(rows_run.len(), 4, "3 training lines and one evaluation: {rows_run:?}");
    assert_eq!(rows_run, examples_run);
    // The run moved: its loss left ln 2 (policy = reference at the start).
    assert!(
        rows_run.iter().any(|(l, _)| (l - std::f64::consts::LN_2).abs() > 1e-3),
        "{rows_run:?}"
    );
}

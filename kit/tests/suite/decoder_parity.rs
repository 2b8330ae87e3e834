//! The decoder against transformers: tiny random-weight models of every family (fixtures made by
//! `tests/oracle/make_tiny_models.py`), f32, logits within 1e-4 max abs at every real (unpadded) position.
use crate::common;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use kit::model::{Decoder, KvCache, ModelConfig, WeightSource};

const TOL: f32 = 1e-4;

struct Fixture {
    name: String,
    decoder: Decoder,
    tensors: std::collections::HashMap<String, Tensor>,
}

/// Every tiny model in `tiny/` (configs as transformers 5 saves them, with `rope_parameters`) and `tiny_hub/`
/// (the same families with configs in the style published on the hub: `rope_theta`, `rope_scaling`,
/// `rope_local_base_freq`, Gemma 2 without `layer_types`, Qwen with an unused `sliding_window`).
fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for set in ["tiny", "tiny_hub"] {
        let root = common::fixtures().join(set);
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("config.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(
            names.len() >= 6,
            "expected the tiny fixtures of every family in {set}, found {names:?}"
        );
        for name in names {
            let dir = root.join(&name);
            let cfg = ModelConfig::from_config_json(&dir.join("config.json")).unwrap();
            let mut src = WeightSource::safetensors_dir(&dir).unwrap();
            let decoder = Decoder::load(&cfg, &mut src, &Device::Cpu, DType::F32).unwrap();
            let tensors = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
            out.push(Fixture {
                name: format!("{set}/{name}"),
                decoder,
                tensors,
            });
        }
    }
    out
}

fn ids(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

fn mask_rows(t: &Tensor) -> Vec<Vec<bool>> {
    t.to_dtype(DType::U32)
        .unwrap()
        .to_vec2::<u32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|x| x == 1).collect())
        .collect()
}

/// Max |a - b| over positions where `mask` is true; a: (b, t, v).
fn max_diff(a: &Tensor, b: &Tensor, mask: &[Vec<bool>]) -> f32 {
    let (a, b) = (a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
    let mut worst = 0f32;
    for (r, row) in mask.iter().enumerate() {
        for (j, &m) in row.iter().enumerate() {
            if m {
                for (x, y) in a[r][j].iter().zip(&b[r][j]) {
                    worst = worst.max((x - y).abs());
                }
            }
        }
    }
    worst
}

#[test]
fn logits_match_transformers_plain_and_left_padded() {
    for f in fixtures() {
        let t = &f.tensors;
        let plain = f.decoder.forward(&ids(&t["plain.input_ids"]), None, None).unwrap();
        let all = vec![vec![true; plain.dim(1).unwrap()]; plain.dim(0).unwrap()];
        let d = max_diff(&plain, &t["plain.logits"], &all);
        assert!(d <= TOL, "{}: plain logits differ by {d}", f.name);

        let mask = mask_rows(&t["padded.attention_mask"]);
        let padded = f
            .decoder
            .forward(&ids(&t["padded.input_ids"]), Some(&mask), None)
            .unwrap();
        let d = max_diff(&padded, &t["padded.logits"], &mask);
        assert!(d <= TOL, "{}: left-padded logits differ by {d}", f.name);
        // Our position ids are the ones transformers was given.
        let want: Vec<Vec<i64>> = t["padded.position_ids"].to_vec2().unwrap();
        let mut cache = KvCache::new(f.decoder.layers.len());
        f.decoder
            .forward(&ids(&t["padded.input_ids"]), Some(&mask), Some(&mut cache))
            .unwrap();
        for (r, row) in mask.iter().enumerate() {
            let real = row.iter().filter(|&&m| m).count() as u32;
            assert_eq!(cache.next_position[r], real, "{}", f.name);
            assert_eq!(*want[r].last().unwrap() as u32 + 1, real, "{}", f.name);
        }
    }
}

#[test]
fn packed_sequences_give_transformers_padded_logits() {
    // The rows of transformers' left-padded batch without their pads, laid end to end in one packed row (each
    // attending only to itself, positions from 0; Gemma's tiny models slide a window of 4) and, reversed, two to a
    // row: every real position's logits must be transformers'.
    for f in fixtures() {
        let t = &f.tensors;
        let all: Vec<Vec<u32>> = ids(&t["padded.input_ids"]).to_vec2().unwrap();
        let mask = mask_rows(&t["padded.attention_mask"]);
        let want: Vec<Vec<Vec<f32>>> = t["padded.logits"].to_dtype(DType::F32).unwrap().to_vec3().unwrap();
        let seqs: Vec<Vec<u32>> = all
            .iter()
            .zip(&mask)
            .map(|(row, m)| row.iter().zip(m).filter(|(_, &m)| m).map(|(&id, _)| id).collect())
            .collect();
        let order: Vec<usize> = (0..seqs.len()).rev().collect();
        for layout in [
            vec![(0..seqs.len()).collect::<Vec<_>>()],
            order.chunks(2).map(<[usize]>::to_vec).collect(),
        ] {
            let rows: Vec<Vec<&[u32]>> = layout
                .iter()
                .map(|r| r.iter().map(|&i| seqs[i].as_slice()).collect())
                .collect();
            let hidden = f.decoder.forward_packed_hidden(&rows).unwrap();
            let logits: Vec<Vec<Vec<f32>>> = f.decoder.logits(&hidden).unwrap().to_vec3().unwrap();
            let mut worst = 0f32;
            for (p, row) in layout.iter().enumerate() {
                let mut start = 0;
                for &i in row {
                    let real: Vec<usize> = (0..mask[i].len()).filter(|&j| mask[i][j]).collect();
                    for (offset, &j) in real.iter().enumerate() {
                        for (a, b) in logits[p][start + offset].iter().zip(&want[i][j]) {
                            worst = worst.max((a - b).abs());
                        }
                    }
                    start += real.len();
                }
            }
            assert!(worst <= TOL, "{} {layout:?}: packed logits differ by {worst}", f.name);
        }
    }
}

#[test]
fn kv_cache_decoding_matches_full_forward_logits() {
    // Feed a prefix, then one token at a time through the cache: each step's logits must equal transformers'
    // full-sequence logits at that position (left-padded batch, so pads sit in the cache too).
    for f in fixtures() {
        let t = &f.tensors;
        let input = ids(&t["padded.input_ids"]);
        let mask = mask_rows(&t["padded.attention_mask"]);
        let want = &t["padded.logits"];
        let (_, len) = input.dims2().unwrap();
        let prefix = 8;
        let mut cache = KvCache::new(f.decoder.layers.len());
        let pm: Vec<Vec<bool>> = mask.iter().map(|r| r[..prefix].to_vec()).collect();
        let got = f
            .decoder
            .forward(&input.i((.., ..prefix)).unwrap(), Some(&pm), Some(&mut cache))
            .unwrap();
        let pm_ok: Vec<Vec<bool>> = pm.clone();
        assert!(
            max_diff(&got, &want.i((.., ..prefix, ..)).unwrap().contiguous().unwrap(), &pm_ok) <= TOL,
            "{}",
            f.name
        );
        for j in prefix..len {
            let step_mask: Vec<Vec<bool>> = mask.iter().map(|r| vec![r[j]]).collect();
            let got = f
                .decoder
                .forward(&input.i((.., j..j + 1)).unwrap(), Some(&step_mask), Some(&mut cache))
                .unwrap();
            let d = max_diff(
                &got,
                &want.i((.., j..j + 1, ..)).unwrap().contiguous().unwrap(),
                &step_mask,
            );
            assert!(d <= TOL, "{}: cached step {j} differs by {d}", f.name);
        }
    }
}

#[test]
fn input_gradient_matches_torch_autograd() {
    // Every op on the training path has a correct backward: d(mean next-token CE)/d(embedding lookup output)
    // equals torch's, for every family (fixture tensors `plain.loss`, `plain.embeds_grad`).
    for f in fixtures() {
        let t = &f.tensors;
        let (Some(want_loss), Some(want_grad)) = (t.get("plain.loss"), t.get("plain.embeds_grad")) else {
            panic!("{}: fixture lacks plain.loss / plain.embeds_grad", f.name)
        };
        let input = ids(&t["plain.input_ids"]);

        let raw = f.decoder.embed_tokens.forward(&input, DType::F32).unwrap();
        let x = Var::from_tensor(&raw).unwrap();
        let h = f
            .decoder
            .forward_embeds(&f.decoder.scale_embeddings(x.as_tensor().clone()).unwrap(), None, None)
            .unwrap();
        let logits = f.decoder.logits(&h).unwrap();
        let loss = common::next_token_loss(&logits, &input);
        let got_loss = loss.to_scalar::<f32>().unwrap();
        let want_loss = want_loss
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!(
            (got_loss - want_loss).abs() <= 1e-4,
            "{}: loss {got_loss} vs {want_loss}",
            f.name
        );
        let grads = loss.backward().unwrap();
        let g = grads.get(x.as_tensor()).expect("gradient reaches the embeddings");
        let scale = common::max_abs(want_grad);
        let d = common::max_abs(&(g - want_grad).unwrap());
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "{}: embedding grad differs by {d} (scale {scale})",
            f.name
        );
    }
}

/// Hidden states (b·(t−1), hidden) of the positions that predict a next token, their targets, and the embedding
/// output they are a function of.
fn scored_hidden(f: &Fixture, input: &Tensor) -> (Var, Tensor, Vec<u32>) {
    let raw = f.decoder.embed_tokens.forward(input, DType::F32).unwrap();
    let x = Var::from_tensor(&raw).unwrap();
    let h = f
        .decoder
        .forward_embeds(&f.decoder.scale_embeddings(x.as_tensor().clone()).unwrap(), None, None)
        .unwrap();
    let (b, t, d) = h.dims3().unwrap();
    let h = h.narrow(1, 0, t - 1).unwrap().reshape((b * (t - 1), d)).unwrap();
    let targets = input
        .narrow(1, 1, t - 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    (x, h, targets)
}

#[test]
fn chunked_head_log_probs_give_torchs_loss_and_input_gradient() {
    // kit::lm_head runs the head three rows at a time and returns d log p / d hidden from its own closed form; the
    // mean next-token CE it gives (−mean log p) and the gradient reaching the embeddings must equal torch's, for
    // every family (Gemma 2's tiny model soft-caps its logits).
    for f in fixtures() {
        let t = &f.tensors;
        let input = ids(&t["plain.input_ids"]);
        let (x, h, targets) = scored_hidden(&f, &input);
        let scores = kit::lm_head::head_scores_in_chunks(&f.decoder, &h, &targets, 1.0, 3).unwrap();
        let loss = (scores.logps.mean_all().unwrap() * -1.0).unwrap();
        let want_loss = t["plain.loss"]
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        let got_loss = loss.to_scalar::<f32>().unwrap();
        assert!(
            (got_loss - want_loss).abs() <= 1e-4,
            "{}: loss {got_loss} vs {want_loss}",
            f.name
        );
        let g = loss
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .expect("gradient reaches the embeddings")
            .clone();
        let want = &t["plain.embeds_grad"];
        let d = common::max_abs(&(g - want).unwrap());
        let scale = common::max_abs(want);
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "{}: embedding grad differs by {d} (scale {scale})",
            f.name
        );
    }
}

#[test]
fn chunked_head_log_probs_under_a_temperature_match_finite_differences() {
    // log softmax(softcap(h Wᵀ) / τ) at τ = 0.7 on the soft-capped Gemma 2 model: the closed-form gradient of
    // Σ gᵢ log pᵢ with respect to the hidden rows against central differences of the same forward, in f64 steps of
    // an f32 model (so the tolerance is loose, but a missing s′(u) or 1/τ factor is far outside it). The statistics
    // are checked against the full logits.
    let f = fixtures()
        .into_iter()
        .find(|f| f.name == "tiny/gemma2")
        .expect("tiny/gemma2 fixture");
    let input = ids(&f.tensors["plain.input_ids"]);
    let (_, h, targets) = scored_hidden(&f, &input);
    let h = Var::from_tensor(&h.detach()).unwrap();
    let k = targets.len();
    let weights: Vec<f32> = (0..k).map(|i| 1.0 + (i % 3) as f32 * 0.5).collect();
    let g = Tensor::new(weights.as_slice(), &Device::Cpu).unwrap();
    let objective = |h: &Tensor| -> Tensor {
        let s = kit::lm_head::head_scores_in_chunks(&f.decoder, h, &targets, 0.7, 2).unwrap();
        (s.logps * &g).unwrap().sum_all().unwrap()
    };
    let grad = objective(h.as_tensor())
        .backward()
        .unwrap()
        .get(h.as_tensor())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let base = h.as_tensor().to_vec2::<f32>().unwrap();
    let eps = 1e-2f32;
    for &(r, c) in &[(0usize, 0usize), (1, 3), (k / 2, 5), (k - 1, 7)] {
        let at = |delta: f32| {
            let mut v = base.clone();
            v[r][c] += delta;
            objective(&Tensor::new(v, &Device::Cpu).unwrap())
                .to_scalar::<f32>()
                .unwrap()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!(
            (grad[r][c] - fd).abs() <= 2e-2 * fd.abs().max(1.0),
            "({r},{c}): closed form {} vs {fd}",
            grad[r][c]
        );
    }
    // Statistics of the full logits: entropy −Σ p log p, arg-max = target, mean logit.
    let s = kit::lm_head::head_scores_in_chunks(&f.decoder, h.as_tensor(), &targets, 0.7, 2).unwrap();
    let z = (f.decoder.logits(&h.as_tensor().detach()).unwrap() / 0.7).unwrap();
    let logp = candle_nn::ops::log_softmax(&z, 1).unwrap();
    let entropy = (logp.exp().unwrap() * &logp)
        .unwrap()
        .sum(1)
        .unwrap()
        .neg()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let argmax = z.argmax(1).unwrap().to_vec1::<u32>().unwrap();
    let mean = z.mean(1).unwrap().to_vec1::<f32>().unwrap();
    for i in 0..k {
        assert!((s.entropy[i] - entropy[i]).abs() < 1e-4, "entropy {i}");
        assert!((s.mean_logit[i] - mean[i]).abs() < 1e-5, "mean logit {i}");
        assert_eq!(s.correct[i], argmax[i] == targets[i], "arg-max {i}");
    }
}

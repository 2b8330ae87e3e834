//! Choosing the next token: repetition penalty, temperature, top-k, top-p — in transformers' order — seeded.
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Settings for one sampling step. `temperature == 0` or `do_sample == false` means greedy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    pub do_sample: bool,
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability mass reaches p (1.0 = off).
    pub top_p: f64,
    /// CTRL-style penalty (Keskar et al. 2019) on tokens already in the prompt or output (1.0 = off).
    pub repetition_penalty: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            do_sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
        }
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: StdRng,
}

/// log-softmax of `logits / temperature`, computed stably in f64.
pub fn log_softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64 / t;
    let lse = logits.iter().map(|&l| (l as f64 / t - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&l| l as f64 / t - lse).collect()
}

/// log softmax(logits / temperature)[token] alone: what generation records for each sampled token.
///
/// The same value as `log_softmax(..)[token]` without building the vocabulary-sized vector (262k entries for Gemma,
/// every row, every step): the exponentials are taken in f32 — their arguments are ≤ 0, so each is accurate to an
/// ulp — and summed in f64.
pub fn token_logprob(logits: &[f32], token: u32, temperature: f64) -> f64 {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let inv = (1.0 / t) as f32;
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) * inv;
    let sum: f64 = logits
        .chunks(1024)
        .map(|c| c.iter().map(|&l| (l * inv - max).exp()).sum::<f32>() as f64)
        .sum();
    let picked = logits.get(token as usize).map_or(f32::NEG_INFINITY, |&l| l * inv) as f64;
    picked - max as f64 - sum.ln()
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Sampler {
            params,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn greedy(&self) -> bool {
        !self.params.do_sample || self.params.temperature <= 0.0
    }

    /// Pick the next token from raw `logits`; `seen` are the ids already in this row (prompt + output).
    pub fn sample(&mut self, logits: &[f32], seen: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        let p = self.params.repetition_penalty;
        if p != 1.0 {
            // Each distinct seen token once: positive logits are divided by p, negative ones multiplied.
            let mut done = std::collections::HashSet::new();
            for &id in seen {
                if done.insert(id) {
                    if let Some(l) = logits.get_mut(id as usize) {
                        *l = if *l > 0.0 { *l / p as f32 } else { *l * p as f32 };
                    }
                }
            }
        }
        if self.greedy() {
            return argmax(&logits);
        }
        let t = self.params.temperature as f32;
        // Candidates in vocabulary order; sorting a 262k vocabulary for every row and step would cost more than the
        // forward pass, so only top-p (which needs the most likely tokens first) sorts, and top-k selects in O(V).
        let mut idx: Vec<usize> = (0..logits.len()).filter(|&i| logits[i].is_finite()).collect();
        let by_logit_desc = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
        let k = self.params.top_k;
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, by_logit_desc);
            idx.truncate(k);
        }
        if self.params.top_p < 1.0 {
            idx.sort_unstable_by(by_logit_desc);
        } else if k > 0 {
            idx.sort_unstable();
        }
        let max = idx.iter().map(|&i| logits[i]).fold(f32::NEG_INFINITY, f32::max) / t;
        let mut probs: Vec<f64> = idx.iter().map(|&i| ((logits[i] / t - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        if self.params.top_p < 1.0 {
            // Keep tokens until the mass reaches top_p (always at least one).
            let mut mass = 0.0;
            let mut keep = probs.len();
            for (n, pr) in probs.iter().enumerate() {
                mass += pr;
                if mass >= self.params.top_p {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|x| *x /= total);
        }
        let u: f64 = self.rng.random();
        let mut acc = 0.0;
        for (n, pr) in probs.iter().enumerate() {
            acc += pr;
            if u < acc {
                return idx[n] as u32;
            }
        }
        idx[probs.len() - 1] as u32
    }
}

pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_argmax_after_penalty() {
        let mut s = Sampler::new(
            SamplingParams {
                repetition_penalty: 2.0,
                ..Default::default()
            },
            0,
        );
        // Token 0 (logit 3) is penalised to 1.5, below token 1 (2.0).
        assert_eq!(s.sample(&[3.0, 2.0, -1.0], &[0]), 1);
        // Negative logits are multiplied: token 2 goes from -1 to -2 (still last).
        assert_eq!(s.sample(&[-1.0, -3.0, -0.5], &[2]), 0);
    }

    #[test]
    fn sampling_frequencies_follow_softmax() {
        // Closed form: p = softmax([0, ln 3]) = [0.25, 0.75].
        let mut s = Sampler::new(
            SamplingParams {
                do_sample: true,
                ..Default::default()
            },
            7,
        );
        let n = 20_000;
        let ones = (0..n).filter(|_| s.sample(&[0.0, 3f32.ln()], &[]) == 1).count();
        let f = ones as f64 / n as f64;
        assert!((f - 0.75).abs() < 0.015, "{f}");
    }

    #[test]
    fn top_k_samples_the_k_largest_renormalised() {
        // Closed form: top-2 of [ln 1, ln 3, ln 2, ln 0.5] keeps tokens 1 and 2 with p = [0.6, 0.4].
        let mut s = Sampler::new(
            SamplingParams {
                do_sample: true,
                top_k: 2,
                ..Default::default()
            },
            3,
        );
        let logits = [0.0, 3f32.ln(), 2f32.ln(), 0.5f32.ln()];
        let n = 20_000;
        let picks: Vec<u32> = (0..n).map(|_| s.sample(&logits, &[])).collect();
        assert!(picks.iter().all(|&t| t == 1 || t == 2));
        let f = picks.iter().filter(|&&t| t == 1).count() as f64 / n as f64;
        assert!((f - 0.6).abs() < 0.015, "{f}");
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let mut s = Sampler::new(
            SamplingParams {
                do_sample: true,
                top_k: 1,
                ..Default::default()
            },
            1,
        );
        assert!((0..200).all(|_| s.sample(&[1.0, 1.2, 0.0], &[]) == 1));
        // probs ≈ [0.665, 0.245, 0.09]: top_p 0.6 keeps only the first.
        let mut s = Sampler::new(
            SamplingParams {
                do_sample: true,
                top_p: 0.6,
                ..Default::default()
            },
            1,
        );
        assert!((0..200).all(|_| s.sample(&[2.0, 1.0, 0.0], &[]) == 0));
    }

    #[test]
    fn token_logprob_equals_log_softmax() {
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0).collect();
        for (tok, t) in [(0u32, 1.0), (4999, 0.7), (1234, 1.5)] {
            let full = log_softmax(&logits, t)[tok as usize];
            assert!((token_logprob(&logits, tok, t) - full).abs() < 1e-5, "{tok} {t}");
        }
    }

    #[test]
    fn log_softmax_matches_closed_form() {
        let lp = log_softmax(&[0.0, 3f32.ln()], 1.0);
        assert!((lp[0] - 0.25f64.ln()).abs() < 1e-6 && (lp[1] - 0.75f64.ln()).abs() < 1e-6);
        // Temperature 2 halves the logits: softmax([0, ln3 / 2]) = [1/(1+√3), √3/(1+√3)].
        let lp = log_softmax(&[0.0, 3f32.ln()], 2.0);
        assert!((lp[0] - (1.0 / (1.0 + 3f64.sqrt())).ln()).abs() < 1e-6);
    }
}

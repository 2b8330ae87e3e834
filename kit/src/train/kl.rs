//! KL(π ‖ π_ref) of the policy to a reference, measured on the policy's own samples: the x axis of Gao et al.
//! (2023)'s over-optimisation curves (as √KL), and what a KL budget watches. GRPO logs it for the completions it
//! trains on; DPO trains on fixed pairs, so its KL is measured here on completions sampled for held-out prompts.
use candle_core::Tensor;

use crate::data::tokenize::Tokenized;
use crate::generate::GenerationConfig;
use crate::logps::{collate, token_scores};
use crate::lora::{Adapter, AdapterSnapshot};
use crate::model::Model;
use crate::sampling::SamplingParams;
use crate::Result;

/// What the policy is compared with.
#[derive(Debug, Clone, Copy)]
pub enum KlReference<'a> {
    /// The base model: the adapter switched off.
    Base,
    /// The adapter's values at some moment, e.g. as training started (DPO's `DpoReference::Initial`).
    Snapshot(&'a AdapterSnapshot),
}

/// Per-token k3 estimates exp(d) − d − 1 with d = log π_ref − log π (Schulman 2020; TRL's GRPO `kl`), `mask`ed
/// mean. Unbiased for the per-token KL(π ‖ π_ref) when the tokens are the policy's samples, and never negative.
pub fn k3_mean(policy: &Tensor, reference: &Tensor, mask: &Tensor) -> Result<f64> {
    let d = (reference - policy)?;
    let k3 = ((d.exp()? - &d)? - 1.0)?;
    let count = mask.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((k3 * mask)?.sum_all()?.to_scalar::<f32>()? as f64 / count.max(1.0))
}

/// Per-token KL(π ‖ π_ref), estimated from one completion of at most `max_new_tokens` sampled from the policy (at
/// temperature 1) for each of `prompts`. Both log-probs come from scoring passes in the same mode (the same
/// kernels), so a policy equal to its reference measures exactly 0.
pub fn sampled_kl(
    model: &Model,
    adapter: &Adapter,
    prompts: &[Vec<u32>],
    reference: KlReference,
    max_new_tokens: usize,
    seed: u64,
) -> Result<f64> {
    let _inference = adapter.inference_scope();
    let cfg = GenerationConfig {
        max_new_tokens,
        sampling: SamplingParams {
            do_sample: true,
            temperature: 1.0,
            ..Default::default()
        },
        seed,
        ..Default::default()
    };
    let gens = model.generate_ids(prompts, &cfg, &mut |_| {})?;
    let seqs: Vec<Tokenized> = prompts
        .iter()
        .zip(&gens)
        .map(|(p, g)| Tokenized {
            ids: p.iter().chain(&g.token_ids).copied().collect(),
            completion_mask: std::iter::repeat_n(false, p.len())
                .chain(std::iter::repeat_n(true, g.token_ids.len()))
                .collect(),
        })
        .collect();
    let refs: Vec<&Tokenized> = seqs.iter().collect();
    let batch = collate(&refs, model.pad_token_id(), model.device())?;
    if batch.mask.sum_all()?.to_scalar::<f32>()? == 0.0 {
        return Ok(0.0);
    }
    let policy = token_scores(&model.decoder, &batch)?.logps.detach();
    let reference = match reference {
        KlReference::Base => adapter.with_disabled(|| token_scores(&model.decoder, &batch))?,
        KlReference::Snapshot(s) => adapter.with_values(s, || token_scores(&model.decoder, &batch))?,
    }
    .logps
    .detach();
    k3_mean(&policy, &reference, &batch.mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn k3_is_zero_for_equal_log_probs_and_matches_the_closed_form() {
        let dev = Device::Cpu;
        let p = Tensor::new(&[[-1.0f32, -2.0, -0.5]], &dev).unwrap();
        let mask = Tensor::new(&[[1.0f32, 1.0, 0.0]], &dev).unwrap();
        assert_eq!(k3_mean(&p, &p, &mask).unwrap(), 0.0);
        // d = ref − policy = (0.5, −1.0) on the two counted tokens: (e^0.5 − 1.5 + e^−1 − 0) / 2, by hand.
        let r = Tensor::new(&[[-0.5f32, -3.0, 9.0]], &dev).unwrap();
        let expected = ((0.5f64.exp() - 0.5 - 1.0) + ((-1.0f64).exp() + 1.0 - 1.0)) / 2.0;
        assert!((k3_mean(&p, &r, &mask).unwrap() - expected).abs() < 1e-6);
    }
}

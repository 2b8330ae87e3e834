//! Token-level cross-entropy with a fused forward and a closed-form backward.
//!
//! L = Σᵢ wᵢ (logsumexp(zᵢ) − zᵢ,ₜᵢ) / Σᵢ wᵢ, and ∂L/∂zᵢ = wᵢ (softmax(zᵢ) − onehot(tᵢ)) / Σᵢ wᵢ.
//! candle's composite `cross_entropy` keeps several (rows × vocab) intermediates and their gradients alive; over a
//! 49k–262k vocabulary those dominate memory. Here only the logits are kept; the softmax is recomputed in the
//! backward. The weights wᵢ (1 = counts, 0 = ignored) give TRL's completion-only masks.
use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// Mean cross-entropy of `logits` (rows, vocab) against `targets` (rows, u32), over rows whose `weights`
/// (rows, f32; `None` = all 1) are non-zero.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
    let (rows, vocab) = logits
        .dims2()
        .map_err(|_| Error::Input(format!("logits must be (rows, vocab), got {:?}", logits.shape())))?;
    if targets.dims() != [rows] {
        return Err(Error::Input(format!(
            "targets must be ({rows},), got {:?}",
            targets.shape()
        )));
    }
    let dev = logits.device().clone();
    let weights = match weights {
        Some(w) => w.to_dtype(DType::F32)?,
        None => Tensor::ones(rows, DType::F32, &dev)?,
    };
    let total = weights.sum_all()?.to_scalar::<f32>()?;
    if total <= 0.0 {
        return Err(Error::Input("cross_entropy: every position is masked out".into()));
    }
    let t = targets.to_dtype(DType::U32)?.unsqueeze(1)?;
    if t.max_all()?.to_scalar::<u32>()? as usize >= vocab {
        return Err(Error::Input(format!("a target id is outside the vocabulary ({vocab})")));
    }
    let z = logits.detach().to_dtype(DType::F32)?;
    let max = z.max_keepdim(D::Minus1)?;
    let lse = (z.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?;
    let picked = z.gather(&t, 1)?;
    let per_row = (lse - picked)?.squeeze(1)?;
    let loss = ((per_row * &weights)?.sum_all()? / total as f64)?;
    let scale = (weights / total as f64)?.unsqueeze(1)?;
    crate::autograd::with_backward(logits, loss, "cross-entropy", move |z, _, g| {
        let p = candle_nn::ops::softmax_last_dim(&z.to_dtype(DType::F32)?.contiguous()?)?;
        let minus_one = Tensor::full(-1f32, (rows, 1), p.device())?;
        let grad = p.scatter_add(&t, &minus_one, 1)?.broadcast_mul(&scale)?;
        grad.broadcast_mul(&g.to_dtype(DType::F32)?)?.to_dtype(z.dtype())
    })
}

/// log σ(x) = min(x, 0) − log(1 + e^−|x|), elementwise and differentiable; stable for large |x| (the DPO and
/// Bradley–Terry losses).
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    Ok((x.minimum(&zeros)? - (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?)
}

/// log p(tᵢ | zᵢ) = zᵢ,ₜᵢ − logsumexp(zᵢ) for each row of `logits` (rows, vocab): (rows,), f32, differentiable.
///
/// The building block of DPO, GRPO and every sequence score: ∂/∂zᵢ = gᵢ (onehot(tᵢ) − softmax(zᵢ)), computed in the
/// backward from the logits alone (like [`cross_entropy`], no (rows × vocab) intermediate is kept).
pub fn token_log_probs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (rows, vocab) = logits
        .dims2()
        .map_err(|_| Error::Input(format!("logits must be (rows, vocab), got {:?}", logits.shape())))?;
    if targets.dims() != [rows] {
        return Err(Error::Input(format!(
            "targets must be ({rows},), got {:?}",
            targets.shape()
        )));
    }
    let t = targets.to_dtype(DType::U32)?.unsqueeze(1)?;
    if rows > 0 && t.max_all()?.to_scalar::<u32>()? as usize >= vocab {
        return Err(Error::Input(format!("a target id is outside the vocabulary ({vocab})")));
    }
    let z = logits.detach().to_dtype(DType::F32)?;
    let max = z.max_keepdim(D::Minus1)?;
    let lse = (z.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?;
    let out = (z.gather(&t, 1)? - lse)?.squeeze(1)?;
    crate::autograd::with_backward(logits, out, "token-log-probs", move |z, _, g| {
        let p = candle_nn::ops::softmax_last_dim(&z.to_dtype(DType::F32)?.contiguous()?)?;
        let one = Tensor::ones((rows, 1), DType::F32, p.device())?;
        let grad = p.neg()?.scatter_add(&t, &one, 1)?;
        grad.broadcast_mul(&g.to_dtype(DType::F32)?.unsqueeze(1)?)?
            .to_dtype(z.dtype())
    })
}

/// Next-token loss of a causal LM: logits (b, t, v) predict `ids` (b, t) shifted by one; `mask` (b, t), if given,
/// weights the *predicted* positions (1 = counts).
pub fn causal_lm_loss(logits: &Tensor, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let pred = logits.narrow(1, 0, t - 1)?.reshape((b * (t - 1), v))?;
    let target = ids.narrow(1, 1, t - 1)?.contiguous()?.flatten_all()?;
    let w = match mask {
        Some(m) => Some(m.narrow(1, 1, t - 1)?.contiguous()?.flatten_all()?),
        None => None,
    };
    cross_entropy(&pred, &target, w.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_closed_form_with_a_mask() {
        // Two rows over a vocabulary of 3; the second row is masked out.
        // Row 0: logits [0, ln 3, 0], target 1 → p = [1/5, 3/5, 1/5], loss = −ln(3/5), grad = [1/5, −2/5, 1/5].
        let dev = Device::Cpu;
        let z = Var::new(&[[0f32, 3f32.ln(), 0.0], [5.0, -1.0, 2.0]], &dev).unwrap();
        let t = Tensor::new(&[1u32, 0], &dev).unwrap();
        let w = Tensor::new(&[1f32, 0.0], &dev).unwrap();
        let loss = cross_entropy(z.as_tensor(), &t, Some(&w)).unwrap();
        assert!((loss.to_scalar::<f32>().unwrap() - -(0.6f32.ln())).abs() < 1e-6);
        let g = loss
            .backward()
            .unwrap()
            .get(z.as_tensor())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (got, want) in g[0].iter().zip([0.2f32, -0.4, 0.2]) {
            assert!((got - want).abs() < 1e-6, "{g:?}");
        }
        assert_eq!(g[1], vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn token_log_probs_match_finite_differences() {
        let dev = Device::Cpu;
        let vals = [[0.3f32, -1.2, 2.0, 0.1], [1.5, 0.0, -0.5, 0.7]];
        let z = Var::new(&vals, &dev).unwrap();
        let t = Tensor::new(&[2u32, 0], &dev).unwrap();
        let w = Tensor::new(&[0.7f32, -1.3], &dev).unwrap();
        // f(z) = Σᵢ wᵢ log p(tᵢ | zᵢ); compare the analytic gradient with central differences.
        let f = |z: &Tensor| -> f64 {
            let lp = token_log_probs(z, &t).unwrap();
            (lp * &w).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64
        };
        let lp = token_log_probs(z.as_tensor(), &t).unwrap();
        let row0: f64 = {
            let e: f64 = vals[0].iter().map(|x| (*x as f64).exp()).sum();
            2.0 - e.ln()
        };
        assert!((lp.to_vec1::<f32>().unwrap()[0] as f64 - row0).abs() < 1e-6);
        let g = (lp * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(z.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let h = 1e-2f32;
        for r in 0..2 {
            for c in 0..4 {
                let mut plus = vals;
                plus[r][c] += h;
                let mut minus = vals;
                minus[r][c] -= h;
                let fd =
                    (f(&Tensor::new(&plus, &dev).unwrap()) - f(&Tensor::new(&minus, &dev).unwrap())) / (2.0 * h as f64);
                assert!((fd - g[r][c] as f64).abs() < 1e-3, "{r},{c}: fd {fd} vs {}", g[r][c]);
            }
        }
    }

    #[test]
    fn refuses_bad_targets_and_empty_masks() {
        let dev = Device::Cpu;
        let z = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        assert!(cross_entropy(&z, &Tensor::new(&[0u32, 3], &dev).unwrap(), None).is_err());
        assert!(cross_entropy(
            &z,
            &Tensor::new(&[0u32, 1], &dev).unwrap(),
            Some(&Tensor::zeros(2, DType::F32, &dev).unwrap())
        )
        .is_err());
    }
}

//! RMSNorm that keeps its backward.
//!
//! candle's fused `rms_norm` has no backward, and `candle_nn::RmsNorm::forward` silently switches to it on contiguous
//! input. We use the fused kernel only when nothing upstream needs a gradient, and the composite form otherwise.
use candle_core::{DType, Tensor, D};

use crate::Result;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// The effective scale: `w` (Llama/Qwen) or `1 + w` (Gemma), folded in at load time so there is one code path.
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    /// `plus_one` folds Gemma's `x * (1 + w)` into the stored weight.
    pub fn new(weight: Tensor, eps: f64, plus_one: bool) -> Result<Self> {
        let weight = weight.to_dtype(DType::F32)?;
        let weight = if plus_one { (weight + 1.0)? } else { weight };
        Ok(RmsNorm { weight, eps })
    }

    /// Normalises over the last dimension with candle's fused kernel; statistics in f32 whatever the activation
    /// dtype, as transformers computes them. The backward is the closed form (the weight is frozen):
    /// with r = 1/√(mean(x²) + ε), n = x·r and dn = ∂L/∂y ⊙ w, ∂L/∂x = r · (dn − n · mean(dn ⊙ n)).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.detach().to_dtype(DType::F32)?.contiguous()?;
        let y = candle_nn::ops::rms_norm(&xf, &self.weight, self.eps as f32)?.to_dtype(dtype)?;
        let (w, eps) = (self.weight.clone(), self.eps);
        crate::autograd::with_backward(x, y, "rms-norm", move |x, _, g| {
            let xf = x.to_dtype(DType::F32)?;
            let r = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
            let n = xf.broadcast_mul(&r)?;
            let dn = g.to_dtype(DType::F32)?.broadcast_mul(&w)?;
            let proj = (&dn * &n)?.mean_keepdim(D::Minus1)?;
            (dn - n.broadcast_mul(&proj)?)?.broadcast_mul(&r)?.to_dtype(x.dtype())
        })
    }
}

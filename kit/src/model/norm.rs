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

    /// Normalises over the last dimension. Statistics are computed in f32 whatever the activation dtype,
    /// as transformers does.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        if !x.track_op() && x.is_contiguous() {
            let w = self.weight.to_dtype(dtype)?;
            return Ok(candle_nn::ops::rms_norm(x, &w, self.eps as f32)?);
        }
        let xf = x.to_dtype(DType::F32)?;
        let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_div(&(ms + self.eps)?.sqrt()?)?;
        Ok(normed.broadcast_mul(&self.weight)?.to_dtype(dtype)?)
    }
}

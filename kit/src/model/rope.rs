//! Rotary position embeddings (Su et al. 2021, "RoFormer"), in the rotate-half layout transformers uses.
//!
//! Positions are per row, so left-padded batches rotate each sequence from its own first real token.
//! The fused candle kernel has no backward; we use it only when no gradient flows through q/k.
use candle_core::{DType, Device, Tensor};

use super::config::RopeScaling;
use crate::Result;

#[derive(Debug, Clone)]
pub struct Rope {
    /// (head_dim / 2) inverse frequencies, f32.
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(head_dim: usize, base: f64, scaling: Option<&RopeScaling>, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        // Same f32 arithmetic as transformers: base ** (2i / d) in float32, then 1 / that.
        let mut inv: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (base as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        match scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => inv.iter_mut().for_each(|f| *f /= *factor as f32),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                // Llama 3.1's scaling: long wavelengths are divided by `factor`, short ones kept, the middle band smoothed.
                let (factor, lo, hi, old) = (
                    *factor as f32,
                    *low_freq_factor as f32,
                    *high_freq_factor as f32,
                    *original_max_position_embeddings as f32,
                );
                let low_freq_wavelen = old / lo;
                let high_freq_wavelen = old / hi;
                for f in inv.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if wavelen > low_freq_wavelen { *f / factor } else { *f };
                    let medium = (high_freq_wavelen..=low_freq_wavelen).contains(&wavelen);
                    *f = if medium {
                        let smooth = (old / wavelen - lo) / (hi - lo);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    };
                }
            }
        }
        Ok(Rope {
            inv_freq: Tensor::from_vec(inv, half, device)?,
        })
    }

    /// cos and sin for `positions` (batch, seq) → each (batch, seq, head_dim/2), f32.
    pub fn cos_sin(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t) = positions.dims2()?;
        let pos = positions.to_dtype(DType::F32)?.reshape((b, t, 1))?;
        let freqs = pos.broadcast_mul(&self.inv_freq.reshape((1, 1, ()))?)?;
        Ok((freqs.cos()?, freqs.sin()?))
    }
}

/// Rotate `x` (batch, heads, seq, head_dim) by per-row angles. `cos`/`sin` are (batch, seq, head_dim/2) f32.
/// Fused kernel forward; the rotation is orthogonal, so the backward rotates the gradient by the opposite angle.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let (cos, sin) = (cos.to_dtype(dtype)?.contiguous()?, sin.to_dtype(dtype)?.contiguous()?);
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, &cos, &sin)?;
    let neg_sin = sin.neg()?;
    crate::autograd::with_backward(x, y, "rope", move |_, _, g| {
        candle_nn::rotary_emb::rope(&g.contiguous()?, &cos, &neg_sin)
    })
}

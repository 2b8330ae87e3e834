//! Rotary position embeddings (Su et al. 2021, "RoFormer"), in the rotate-half layout transformers uses.
//!
//! Positions are per row, so left-padded batches rotate each sequence from its own first real token.
//! The fused candle kernel has no backward; we use it only when no gradient flows through q/k.
use candle_core::{DType, Device, Tensor, D};

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
                    let medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
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
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
    if !x.track_op() {
        return Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?);
    }
    // Differentiable form: x * cos + rotate_half(x) * sin with cos/sin repeated over both halves.
    let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?.unsqueeze(1)?;
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
}

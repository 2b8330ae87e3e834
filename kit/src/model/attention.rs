//! Multi-head attention with grouped KV heads, optional q/k norm, soft-capping, and padding-aware masks.
use candle_core::{DType, Device, Tensor};

use super::linear::Linear;
use super::norm::RmsNorm;
use super::rope::apply_rope;
use crate::Result;

/// Large negative score for masked pairs. Finite (not -inf) so that fully masked rows — the query positions of
/// left padding — give a harmless uniform softmax instead of NaN.
const MASKED: f32 = -1e30;

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f64,
    pub softcap: Option<f64>,
}

/// Keys and values seen so far by one layer: (batch, kv_heads, cached_len, head_dim) each.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    pub kv: Option<(Tensor, Tensor)>,
}

impl Attention {
    /// `x`: (batch, seq, hidden). `mask`: additive (batch, 1, seq, cached_len + seq), f32.
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        cache: Option<&mut LayerCache>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let heads =
            |y: Tensor, n: usize| -> Result<Tensor> { Ok(y.reshape((b, t, n, self.head_dim))?.transpose(1, 2)?) };
        let mut q = heads(self.q_proj.forward(x)?, self.num_heads)?;
        let mut k = heads(self.k_proj.forward(x)?, self.num_kv_heads)?;
        let mut v = heads(self.v_proj.forward(x)?, self.num_kv_heads)?;
        if let Some(n) = &self.q_norm {
            q = n.forward(&q.contiguous()?)?;
        }
        if let Some(n) = &self.k_norm {
            k = n.forward(&k.contiguous()?)?;
        }
        q = apply_rope(&q, cos, sin)?;
        k = apply_rope(&k, cos, sin)?;
        if let Some(cache) = cache {
            if let Some((pk, pv)) = &cache.kv {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v.contiguous()?], 2)?;
            }
            cache.kv = Some((k.clone(), v.clone()));
        }
        let groups = self.num_heads / self.num_kv_heads;
        let k = repeat_kv(&k, groups)?;
        let v = repeat_kv(&v, groups)?;

        // Scores and softmax in f32 whatever the activation dtype (as transformers' eager attention).
        let dtype = q.dtype();
        let q = q.to_dtype(DType::F32)?.contiguous()?;
        let k = k.to_dtype(DType::F32)?.contiguous()?;
        let mut scores = (q.matmul(&k.t()?)? * self.scale)?;
        if let Some(cap) = self.softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        let scores = scores.broadcast_add(mask)?;
        let probs = crate::autograd::softmax_last_dim(&scores)?;
        let out = probs.to_dtype(dtype)?.matmul(&v.contiguous()?)?;
        let out = out.transpose(1, 2)?.reshape((b, t, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// (b, kv, s, d) → (b, kv * groups, s, d), each kv head repeated for the query heads that share it.
fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, kv, s, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, kv, groups, s, d))?
        .reshape((b, kv * groups, s, d))?)
}

/// Additive attention mask (batch, 1, seq, past + seq), f32.
///
/// A query at cache index `past + i` may attend to key `j` iff `j <= past + i` (causal), key `j` is a real token
/// (`key_mask[b][j]`), and, for sliding layers, `past + i - j < window`. Indices are cache slots, so left padding
/// (pads occupy the first slots of a row) needs no special casing.
pub fn build_mask(
    key_mask: &[Vec<bool>],
    past: usize,
    seq: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let b = key_mask.len();
    let total = past + seq;
    let mut data = vec![MASKED; b * seq * total];
    for (r, keys) in key_mask.iter().enumerate() {
        for i in 0..seq {
            let q = past + i;
            let row = &mut data[(r * seq + i) * total..(r * seq + i + 1) * total];
            let first = window.map_or(0, |w| (q + 1).saturating_sub(w));
            for j in first..=q {
                if keys[j] {
                    row[j] = 0.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(data, (b, 1, seq, total), device)?)
}

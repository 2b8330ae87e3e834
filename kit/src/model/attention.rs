//! Multi-head attention with grouped KV heads, optional q/k norm, soft-capping, and padding-aware masks.
use candle_core::{DType, Device, Tensor};

use super::kv_cache::{LayerCache, MAX_DIRECT_QUERIES};
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
        let tracked = q.track_op() || k.track_op() || v.track_op();
        let mut scratch = LayerCache::default();
        let direct = !tracked && t <= MAX_DIRECT_QUERIES;
        match cache {
            Some(cache) if direct && cache.buffers(&k) => {
                // Decoding: the new queries read the cache's buffers in place (already (b, t, heads · head_dim)).
                cache.append(&k, &v)?;
                return self.o_proj.forward(&cache.attend(&q, mask, self.scale, self.softcap)?);
            }
            // A short forward without a gradient runs the same arithmetic, so that a prompt's decoding and a
            // forward over it give the same numbers (generation's log-probs against a scoring forward).
            None if direct && scratch.buffers(&k) => {
                scratch.append(&k, &v)?;
                return self
                    .o_proj
                    .forward(&scratch.attend(&q, mask, self.scale, self.softcap)?);
            }
            Some(cache) => {
                let (new_k, new_v) = (k.clone(), v.clone());
                if let Some((pk, pv)) = cache.tensors(x.device())? {
                    k = Tensor::cat(&[&pk, &k], 2)?;
                    v = Tensor::cat(&[&pv, &v.contiguous()?], 2)?;
                }
                cache.append(&new_k, &new_v)?;
            }
            None => {}
        }
        let out = attend(&q, &k, &v, mask, self.scale, self.softcap)?;
        let out = out.transpose(1, 2)?.reshape((b, t, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// softmax(mask + softcap(scale · q kᵀ)) · v for q (b, h, t, d) and k, v (b, kv, s, d) with h a multiple of kv (grouped
/// query heads: query head i reads kv head i / (h / kv)); mask (b, 1, t, s) additive. Returns (b, h, t, d).
///
/// One op with a closed-form backward (Vaswani et al. 2017 for the product; the softmax Jacobian as in
/// `autograd::softmax_last_dim`): only the probabilities P are kept, not the raw, scaled, capped and masked scores.
/// With the groups folded into the query length — q as (b, kv, groups · t, d) — every product runs against the kv
/// heads as they are, so k and v are never repeated and the backward's sums over a group come out of the products.
/// Scores and softmax run in f32 whatever the activation dtype (as transformers' eager attention does).
///
///   S = scale · q kᵀ,  C = c·tanh(S / c) (or S),  P = softmax(C + mask),  O = P v
///   ∂v = Pᵀ ∂O,  ∂P = ∂O vᵀ,  ∂C = P ⊙ (∂P − rowsum(∂P ⊙ P)),  ∂S = ∂C ⊙ (1 − tanh²(S / c)),
///   ∂q = scale · ∂S k,  ∂k = scale · ∂Sᵀ q
///
/// Without a gradient to carry, the product runs in the plain form [`attend_plain`] instead (short forwards on the
/// CPU never get here: [`Attention::forward`] sends them to [`LayerCache::attend`], whose numbers do not depend on
/// the sequence length, so that a prompt's prefill and its token-by-token decoding agree).
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64, softcap: Option<f64>) -> Result<Tensor> {
    if !(q.track_op() || k.track_op() || v.track_op()) {
        return attend_plain(q, k, v, mask, scale, softcap);
    }
    let (b, h, t, d) = q.dims4()?;
    let (_, kv, s, _) = k.dims4()?;
    let groups = h / kv;
    let dtype = q.dtype();
    // (b, h, t, d) → (b, kv, groups · t, d): head i = j · groups + g sits in kv block j.
    let fold = |x: &Tensor| -> candle_core::Result<Tensor> { x.contiguous()?.reshape((b, kv, groups * t, d)) };
    let qf = fold(&q.detach().to_dtype(DType::F32)?)?;
    let kf = k.detach().to_dtype(DType::F32)?.contiguous()?;
    let vd = v.detach().contiguous()?;
    // (b, kv, groups · t, s) → (b, h, t, s) for the mask and the softmax.
    let mut scores = (qf.matmul(&kf.t()?)? * scale)?.reshape((b, h, t, s))?;
    let tanh = match softcap {
        Some(c) => {
            let th = (scores / c)?.tanh()?;
            scores = (&th * c)?;
            Some(th)
        }
        None => None,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
    drop(scores);
    let pf = probs.reshape((b, kv, groups * t, s))?;
    let out = pf.to_dtype(dtype)?.matmul(&vd)?.reshape((b, h, t, d))?;
    let (k_dtype, v_dtype) = (k.dtype(), v.dtype());
    crate::autograd::with_backward3((q, k, v), out, "attention", move |g| {
        let gf = g.to_dtype(DType::F32)?.contiguous()?.reshape((b, kv, groups * t, d))?;
        let vf = vd.to_dtype(DType::F32)?;
        let dv = pf.t()?.matmul(&gf)?; // (b, kv, s, d)
        let dp = gf.matmul(&vf.t()?)?.reshape((b, h, t, s))?;
        let row = (&dp * &probs)?.sum_keepdim(3)?;
        let mut ds = (&probs * dp.broadcast_sub(&row)?)?;
        if let Some(th) = &tanh {
            ds = (ds * (1.0 - th.sqr()?)?)?;
        }
        let ds = (ds * scale)?.reshape((b, kv, groups * t, s))?;
        let dq = ds.matmul(&kf)?.reshape((b, h, t, d))?.to_dtype(dtype)?;
        let dk = ds.t()?.matmul(&qf)?.to_dtype(k_dtype)?;
        Ok((Some(dq), Some(dk), Some(dv.to_dtype(v_dtype)?)))
    })
}

/// [`attend`] in the textbook form: kv heads repeated, one product per query head, candle's ops (differentiable,
/// keeping every intermediate). Used where no gradient flows.
pub fn attend_plain(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    softcap: Option<f64>,
) -> Result<Tensor> {
    let groups = q.dim(1)? / k.dim(1)?;
    let k = repeat_kv(k, groups)?;
    let v = repeat_kv(v, groups)?;
    let dtype = q.dtype();
    let q = q.to_dtype(DType::F32)?.contiguous()?;
    let k = k.to_dtype(DType::F32)?.contiguous()?;
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(cap) = softcap {
        scores = ((scores / cap)?.tanh()? * cap)?;
    }
    let scores = scores.broadcast_add(mask)?;
    let probs = crate::autograd::softmax_last_dim(&scores)?;
    Ok(probs.to_dtype(dtype)?.matmul(&v.contiguous()?)?)
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

/// The lengths of one group in a packed row: a `prefix` and the `suffixes` that each continue it (a plain sequence
/// is a prefix with no suffix). Laid out as prefix, suffix 1, suffix 2, …; every suffix counts its positions on
/// from the prefix's end, as if it followed the prefix alone.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupLengths {
    pub prefix: usize,
    pub suffixes: Vec<usize>,
}

impl GroupLengths {
    /// Tokens the group takes in its row.
    pub fn len(&self) -> usize {
        self.prefix + self.suffixes.iter().sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The additive mask of packed rows ([`crate::model::Decoder::forward_grouped_hidden`]): (rows, 1, width, width).
/// A prefix token sees its prefix up to itself; a suffix token sees the whole prefix and its own suffix up to
/// itself, never another suffix (and, with a `window`, no key further back than it in its sequence's positions).
/// Padding beyond a row's groups sees and is seen by nothing.
pub fn build_packed_mask(
    rows: &[Vec<GroupLengths>],
    width: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let mut data = vec![MASKED; rows.len() * width * width];
    // Keys `from..to` of the query at slot `query` of packed row `r` are visible.
    let mut open = |r: usize, query: usize, from: usize, to: usize| {
        let row = &mut data[(r * width + query) * width..(r * width + query + 1) * width];
        row[from..to].fill(0.0);
    };
    for (r, groups) in rows.iter().enumerate() {
        let mut start = 0;
        for g in groups {
            let p = g.prefix;
            for i in 0..p {
                let first = window.map_or(0, |w| (i + 1).saturating_sub(w));
                open(r, start + i, start + first, start + i + 1);
            }
            let mut at = start + p;
            for &len in &g.suffixes {
                for c in 0..len {
                    // Logical position p + c: prefix keys from (p + c + 1 − w), own keys from (c + 1 − w).
                    let prefix_first = window.map_or(0, |w| (p + c + 1).saturating_sub(w)).min(p);
                    open(r, at + c, start + prefix_first, start + p);
                    let own_first = window.map_or(0, |w| (c + 1).saturating_sub(w));
                    open(r, at + c, at + own_first, at + c + 1);
                }
                at += len;
            }
            start = at;
        }
    }
    Ok(Tensor::from_vec(data, (rows.len(), 1, width, width), device)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::Var;

    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64, cap: Option<f64>) -> Tensor {
        attend_plain(q, k, v, mask, scale, cap).unwrap()
    }

    /// A seeded tensor of values in [−1, 1).
    pub(crate) fn random_tensor(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let data: Vec<f32> = (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    /// max |a − b| over all elements.
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn random(shape: (usize, usize, usize, usize), seed: u64) -> Var {
        Var::from_tensor(&random_tensor(shape, seed)).unwrap()
    }

    #[test]
    fn grouped_attention_and_its_backward_equal_the_textbook_form() {
        // 6 (or 9) query heads over 2 (or 3) kv heads, a left-padded row, with and without soft-capping; the
        // gradients of Σ w ⊙ O with respect to q, k and v against candle's autograd through the plain form.
        // Also with a cache: one or three new queries after four cached positions.
        for (b, h, kv, d, past, t, cap) in [
            (2, 6, 2, 4, 0, 5, None),
            (2, 6, 2, 4, 0, 5, Some(2.0)),
            (2, 6, 2, 4, 4, 1, None),
            (2, 6, 2, 4, 4, 3, Some(2.0)),
            (1, 9, 3, 64, 0, 7, None),
            (3, 9, 3, 64, 7, 1, None),
            (1, 9, 3, 64, 37, 1, None),
            (1, 9, 3, 64, 0, 40, None),
            (1, 9, 3, 64, 20, 1, None),
        ] {
            let s = past + t;
            // Row 1 (when there is one) is left-padded by two positions.
            let keys: Vec<Vec<bool>> = (0..b).map(|r| (0..s).map(|j| r != 1 || j >= 2).collect()).collect();
            let mask = build_mask(&keys, past, t, None, &Device::Cpu).unwrap();
            let (q, k, v) = (
                random((b, h, t, d), 1),
                random((b, kv, s, d), 2),
                random((b, kv, s, d), 3),
            );
            let w = random((b, h, t, d), 4).as_tensor().detach();
            let ours = attend(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.7, cap).unwrap();
            let want = reference(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, 0.7, cap);
            let diff = max_diff;
            assert!(diff(&ours, &want) < 1e-6, "forward, cap {cap:?}");
            let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (want * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
                let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
                assert!(diff(a, b) < 1e-5, "∂{name}, cap {cap:?}: {}", diff(a, b));
            }
        }
    }
}

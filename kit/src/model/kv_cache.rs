//! Generation's KV cache, and the attention of a few new tokens against it.
//!
//! On the CPU in f32 each layer keeps its keys and values in buffers that grow by doubling, so a decoding step
//! writes its one new position in place instead of copying the whole cache into a new tensor (`cat`), and the new
//! tokens' attention reads the buffers directly: one pass per (row, query head), grouped kv heads read where they
//! are (never repeated), each sum in a fixed order — a row's numbers do not depend on the rows beside it. Elsewhere
//! (a GPU, f16) the cache is a pair of tensors, concatenated at each step.
//!
//! The cache holds values, not graphs: no gradient flows into cached positions (training runs without a cache).
use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// Forwards of at most this many new tokens a row without a gradient attend in [`LayerCache::attend`] (with the
/// caller's cache or without one); longer ones run candle's products, which win once there are many queries. The
/// quantized kernels take up to 32 rows too (`quant::dequantize_above`), so for a prompt of up to 32 tokens its
/// prefill, its token-by-token decoding and a forward over the whole sequence run the same arithmetic per position.
pub const MAX_DIRECT_QUERIES: usize = 32;

/// Per-sequence state kept between generation steps: each layer's keys/values, which cache slots hold real
/// tokens, and each row's next position id.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    pub key_mask: Vec<Vec<bool>>,
    pub next_position: Vec<u32>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::default(); num_layers],
            key_mask: vec![],
            next_position: vec![],
        }
    }
    /// Number of cache slots filled (including padding slots).
    pub fn len(&self) -> usize {
        self.key_mask.first().map_or(0, |r| r.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Keep only the cache rows `rows` (in that order), e.g. when finished rows leave a generation batch. A row
    /// listed twice is copied (a prompt prefilled once for several completions).
    pub fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.key_mask.len()) {
            return Err(Error::msg(format!(
                "cache row {r} of {}: no such row",
                self.key_mask.len()
            )));
        }
        for layer in &mut self.layers {
            layer.keep_rows(rows)?;
        }
        self.key_mask = rows.iter().map(|&r| self.key_mask[r].clone()).collect();
        self.next_position = rows.iter().map(|&r| self.next_position[r]).collect();
        Ok(())
    }
}

/// Keys and values seen so far by one layer, (batch, kv_heads, len, head_dim) each.
#[derive(Debug, Clone, Default)]
pub enum LayerCache {
    #[default]
    Empty,
    /// CPU f32: buffers of (batch, kv_heads, capacity, head_dim), the first `len` positions of each row filled.
    Buffers {
        k: Vec<f32>,
        v: Vec<f32>,
        shape: CacheShape,
        capacity: usize,
        len: usize,
    },
    /// Any other device or dtype.
    Tensors(Tensor, Tensor),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    pub batch: usize,
    pub heads: usize,
    pub dim: usize,
}

impl LayerCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        match self {
            LayerCache::Empty => 0,
            LayerCache::Buffers { len, .. } => *len,
            LayerCache::Tensors(k, _) => k.dim(2).unwrap_or(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the cache keeps (or, empty, will keep) keys like `k` in buffers, which [`LayerCache::attend`] reads.
    pub fn buffers(&self, k: &Tensor) -> bool {
        match self {
            LayerCache::Empty => k.device().is_cpu() && k.dtype() == DType::F32,
            LayerCache::Buffers { .. } => true,
            LayerCache::Tensors(..) => false,
        }
    }

    /// Append new keys and values, (batch, kv_heads, t, head_dim) each.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let (batch, heads, t, dim) = k.dims4()?;
        let shape = CacheShape { batch, heads, dim };
        let buffered = k.device().is_cpu() && k.dtype() == DType::F32;
        match self {
            LayerCache::Empty if buffered => {
                let capacity = t.next_power_of_two().max(64);
                let mut new = LayerCache::Buffers {
                    k: vec![0.0; batch * heads * capacity * dim],
                    v: vec![0.0; batch * heads * capacity * dim],
                    shape,
                    capacity,
                    len: 0,
                };
                new.append(k, v)?;
                *self = new;
            }
            LayerCache::Empty => *self = LayerCache::Tensors(k.detach(), v.detach()),
            LayerCache::Tensors(pk, pv) => {
                *pk = Tensor::cat(&[&*pk, &k.detach()], 2)?;
                *pv = Tensor::cat(&[&*pv, &v.detach().contiguous()?], 2)?;
            }
            LayerCache::Buffers {
                k: kb,
                v: vb,
                shape: have,
                capacity,
                len,
            } => {
                if *have != shape {
                    return Err(Error::msg(format!(
                        "KV cache of {have:?} given keys of batch {batch}, {heads} heads of {dim}"
                    )));
                }
                if *len + t > *capacity {
                    let grown = (*len + t).next_power_of_two();
                    for buf in [&mut *kb, &mut *vb] {
                        *buf = regrow(buf, shape, *capacity, grown, *len, |r| r);
                    }
                    *capacity = grown;
                }
                // (batch, heads, t, dim), made contiguous, into positions len..len + t of each (row, head).
                for (buf, new) in [(&mut *kb, k), (&mut *vb, v)] {
                    let data = new.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    for (row, chunk) in data.chunks_exact(t * dim).enumerate() {
                        let at = (row * *capacity + *len) * dim;
                        buf[at..at + t * dim].copy_from_slice(chunk);
                    }
                }
                *len += t;
            }
        }
        Ok(())
    }

    /// The cached keys and values as tensors, (batch, kv_heads, len, head_dim) each.
    pub fn tensors(&self, device: &Device) -> Result<Option<(Tensor, Tensor)>> {
        Ok(match self {
            LayerCache::Empty => None,
            LayerCache::Tensors(k, v) => Some((k.clone(), v.clone())),
            LayerCache::Buffers {
                k,
                v,
                shape,
                capacity,
                len,
            } => {
                let take = |buf: &[f32]| regrow(buf, *shape, *capacity, *len, *len, |r| r);
                let dims = (shape.batch, shape.heads, *len, shape.dim);
                Some((
                    Tensor::from_vec(take(k), dims, device)?,
                    Tensor::from_vec(take(v), dims, device)?,
                ))
            }
        })
    }

    /// Keep only the batch rows `rows`, in that order (a row listed twice is copied).
    pub fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        match self {
            LayerCache::Empty => {}
            LayerCache::Tensors(k, v) => {
                let index = Tensor::from_vec(
                    rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                    rows.len(),
                    k.device(),
                )?;
                *k = k.contiguous()?.index_select(&index, 0)?;
                *v = v.contiguous()?.index_select(&index, 0)?;
            }
            LayerCache::Buffers {
                k,
                v,
                shape,
                capacity,
                len,
            } => {
                let (from, mut to) = (*shape, *shape);
                to.batch = rows.len();
                for buf in [k, v] {
                    *buf = regather(buf, from, to, *capacity, *len, rows);
                }
                *shape = to;
            }
        }
        Ok(())
    }

    /// softmax(mask + softcap(scale · q kᵀ)) · v for the new tokens' queries q (batch, heads, t, head_dim) against
    /// every cached position (the new ones appended already); mask (batch, 1, t, len) additive. Returns
    /// (batch, t, heads · head_dim): the layout the output projection reads. Query head i reads kv head
    /// i / (heads / kv_heads). An error unless the cache keeps [`buffers`](LayerCache::buffers).
    pub fn attend(&self, q: &Tensor, mask: &Tensor, scale: f64, softcap: Option<f64>) -> Result<Tensor> {
        let LayerCache::Buffers {
            k,
            v,
            shape,
            capacity,
            len,
        } = self
        else {
            return Err(Error::msg(
                "attention against the cache's buffers of a cache that has none",
            ));
        };
        let (b, h, t, d) = q.dims4()?;
        if b != shape.batch || d != shape.dim || !h.is_multiple_of(shape.heads) || mask.dims4()? != (b, 1, t, *len) {
            return Err(Error::msg(format!(
                "cached attention: queries {:?} and mask {:?} against a cache of {shape:?}, {len} positions",
                q.dims(),
                mask.dims()
            )));
        }
        let qs = q.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let masks = mask.flatten_all()?.to_vec1::<f32>()?;
        let groups = h / shape.heads;
        let (cap, len, scale) = (*capacity, *len, scale as f32);
        let mut out = vec![0f32; b * t * h * d];
        let out_addr = out.as_mut_ptr() as usize;
        let run = |items: std::ops::Range<usize>| {
            let mut scores = vec![0f32; len];
            for item in items {
                let (row, head) = (item / h, item % h);
                let kv = (row * shape.heads + head / groups) * cap * d;
                let (keys, values) = (&k[kv..kv + len * d], &v[kv..kv + len * d]);
                for i in 0..t {
                    let query = &qs[((row * h + head) * t + i) * d..][..d];
                    let mask = &masks[(row * t + i) * len..][..len];
                    for ((s, key), m) in scores.iter_mut().zip(keys.chunks_exact(d)).zip(mask) {
                        let raw = scale * dot(query, key);
                        *s = match softcap {
                            Some(c) => (c as f32) * (raw / c as f32).tanh(),
                            None => raw,
                        } + m;
                    }
                    let max = scores.iter().fold(f32::NEG_INFINITY, |a, &s| a.max(s));
                    let mut sum = 0f32;
                    for s in scores.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    // SAFETY: each (row, query, head) slice of `out` is written by exactly one work item, and `out`
                    // outlives the call.
                    let o = unsafe {
                        std::slice::from_raw_parts_mut((out_addr as *mut f32).add(((row * t + i) * h + head) * d), d)
                    };
                    for (&s, value) in scores.iter().zip(values.chunks_exact(d)) {
                        let p = s / sum;
                        for (o, &x) in o.iter_mut().zip(value) {
                            *o += p * x;
                        }
                    }
                }
            }
        };
        candle_core::utils::barrier_pool().execute_chunked(b * h, run);
        Ok(Tensor::from_vec(out, (b, t, h * d), q.device())?.to_dtype(q.dtype())?)
    }
}

/// Σ a·b in eight running lanes (which vectorize), added up at the end.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The first `len` positions of each (row, head) of a buffer with `from` capacity, in one of `to` capacity.
fn regrow(
    buf: &[f32],
    shape: CacheShape,
    from: usize,
    to: usize,
    len: usize,
    row: impl Fn(usize) -> usize,
) -> Vec<f32> {
    let d = shape.dim;
    let mut out = vec![0f32; shape.batch * shape.heads * to * d];
    for r in 0..shape.batch * shape.heads {
        let src = row(r) * from * d;
        out[r * to * d..r * to * d + len * d].copy_from_slice(&buf[src..src + len * d]);
    }
    out
}

/// The batch rows `rows` of a buffer of `from`'s shape, as one of `to`'s (the same capacity).
fn regather(buf: &[f32], from: CacheShape, to: CacheShape, capacity: usize, len: usize, rows: &[usize]) -> Vec<f32> {
    let heads = from.heads;
    regrow(buf, to, capacity, capacity, len, |r| {
        rows[r / heads] * heads + r % heads
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attention::tests::{max_diff, random_tensor as random};
    use crate::model::attention::{attend_plain, build_mask};

    #[test]
    fn cached_attention_equals_the_textbook_form_over_the_whole_sequence() {
        // 9 query heads over 3 kv heads, row 1 left-padded by two positions, with and without soft-capping; the
        // cache filled by a prefill of 5 and then steps of 1 and 3 tokens (past its first capacity, 64: it grows),
        // and rows dropped and duplicated on the way, as generation does.
        let (h, kv, d) = (9, 3, 16);
        for cap in [None, Some(2.0)] {
            let mut b = 3;
            let mut cache = LayerCache::default();
            let mut keys: Vec<Vec<bool>> = (0..b).map(|_| vec![]).collect();
            let (mut all_k, mut all_v): (Option<Tensor>, Option<Tensor>) = (None, None);
            for (step, t) in [5usize, 1, 3, 60, 1, 1].into_iter().enumerate() {
                if step == 3 {
                    // Rows 2 and 0 stay (row 0 twice).
                    let rows = [2usize, 0, 0];
                    cache.keep_rows(&rows).unwrap();
                    let index = Tensor::new(&[2u32, 0, 0], &Device::Cpu).unwrap();
                    all_k = all_k.map(|x| x.index_select(&index, 0).unwrap());
                    all_v = all_v.map(|x| x.index_select(&index, 0).unwrap());
                    keys = rows.iter().map(|&r| keys[r].clone()).collect();
                    b = rows.len();
                }
                let past = keys[0].len();
                for (r, row) in keys.iter_mut().enumerate() {
                    row.extend((0..t).map(|j| r != 1 || past + j >= 2));
                }
                let (q, k, v) = (
                    random((b, h, t, d), 10 + step as u64),
                    random((b, kv, t, d), 20 + step as u64),
                    random((b, kv, t, d), 30 + step as u64),
                );
                cache.append(&k, &v).unwrap();
                let cat = |a: Option<Tensor>, x: &Tensor| match a {
                    Some(a) => Tensor::cat(&[&a, x], 2).unwrap(),
                    None => x.clone(),
                };
                all_k = Some(cat(all_k, &k));
                all_v = Some(cat(all_v, &v));
                let mask = build_mask(&keys, past, t, None, &Device::Cpu).unwrap();
                let got = cache.attend(&q, &mask, 0.3, cap).unwrap();
                let want = attend_plain(&q, all_k.as_ref().unwrap(), all_v.as_ref().unwrap(), &mask, 0.3, cap)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .reshape((b, t, h * d))
                    .unwrap();
                let diff = max_diff(&got, &want);
                assert!(diff < 1e-5, "step {step} (t = {t}), cap {cap:?}: {diff}");
                let (ck, _) = cache.tensors(&Device::Cpu).unwrap().unwrap();
                let same = max_diff(&ck, all_k.as_ref().unwrap());
                assert_eq!(same, 0.0, "the cache holds the keys appended");
            }
        }
    }

    #[test]
    fn a_row_attends_the_same_alone_or_in_a_batch() {
        let (h, kv, d, t) = (4, 2, 8, 1);
        let (k, v) = (random((3, kv, 7, d), 1), random((3, kv, 7, d), 2));
        let q = random((3, h, t, d), 3);
        let keys = vec![vec![true; 7]; 3];
        let mut cache = LayerCache::default();
        cache.append(&k, &v).unwrap();
        let mask = build_mask(&keys, 6, t, None, &Device::Cpu).unwrap();
        let together: Vec<Vec<Vec<f32>>> = cache.attend(&q, &mask, 0.5, None).unwrap().to_vec3().unwrap();
        for (r, want) in together.iter().enumerate() {
            let mut alone = LayerCache::default();
            alone
                .append(&k.narrow(0, r, 1).unwrap(), &v.narrow(0, r, 1).unwrap())
                .unwrap();
            let one = alone
                .attend(&q.narrow(0, r, 1).unwrap(), &mask.narrow(0, r, 1).unwrap(), 0.5, None)
                .unwrap()
                .to_vec3::<f32>()
                .unwrap();
            assert_eq!(&one[0], want, "row {r}");
        }
    }
}

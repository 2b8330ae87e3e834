//! Q4_1 weights rearranged in tiles of 16 rows, for decoding's products on CPUs with AVX-512 VNNI.
//!
//! The row-by-row kernel of [`super`] spends ~8 cycles on each 32-value block: two f16 scales converted one at a
//! time, the nibbles unpacked for one row, and a horizontal sum at the end of every row. Here W is rearranged once
//! (the same bytes, in another order) so that one 512-bit register holds four values of each of 16 rows:
//! `vpdpbusd` against x's four values broadcast then gives 16 rows' partial sums in 16 lanes, the scales of the
//! 16 rows convert with one instruction, and no horizontal sum is left (the lanes are the outputs). The weight is
//! read front to back once per product, as before.
//!
//! Layout: tiles of 16 rows (the last one padded with zero rows), each a run of `k / 32` tile blocks of 320 bytes:
//! the 16 rows' f16 `d`, their 16 f16 `m`, then four 64-byte chunks. In chunk p, bytes 4i..4i+4 belong to row i:
//! their low nibbles are the row's values 8p..8p+4 of the block, their high nibbles values 8p+4..8p+8.
//!
//! Each output is Σ_blocks (d·dx · Σ q·xq + m · dx·Σ xq), summed over the blocks in order with fused multiply-adds:
//! a row's numbers do not depend on the tile it sits in or on the rows of x beside it.
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use super::{quantize_rows, Q4_1_BLOCK_BYTES, QK};
use crate::{Error, Result};

/// Rows per tile: one per 32-bit lane of a 512-bit register.
const TILE: usize = 16;
/// Bytes of one tile block: 16 f16 scales, 16 f16 minimums, 16 rows × 32 four-bit values.
const TILE_BLOCK_BYTES: usize = TILE * 2 + TILE * 2 + TILE * QK / 2;
/// Rows of x multiplied together against one tile of W.
const GROUP: usize = 8;

/// A Q4_1 weight (n × k) in 16-row tiles; see the module docs.
#[derive(Debug, Clone)]
pub struct TiledQ4_1 {
    n: usize,
    k: usize,
    data: Vec<u8>,
}

/// Whether the tiled kernel runs on this CPU (AVX-512 F/BW/DQ with VNNI).
pub fn available() -> bool {
    super::vnni512() && super::available()
}

impl TiledQ4_1 {
    /// Rearrange a Q4_1 weight. An error for another type or a shape whose rows are not whole blocks.
    pub fn new(q: &QTensor) -> Result<Self> {
        if q.dtype() != GgmlDType::Q4_1 {
            return Err(Error::msg(format!("tiled Q4_1 weight from a {:?} tensor", q.dtype())));
        }
        let (n, k) = q.shape().dims2()?;
        if !k.is_multiple_of(QK) {
            return Err(Error::msg(format!(
                "Q4_1 weight {n}×{k}: rows are not whole blocks of {QK}"
            )));
        }
        let raw = q.data()?;
        let blocks = k / QK;
        let tiles = n.div_ceil(TILE);
        let mut data = vec![0u8; tiles * blocks * TILE_BLOCK_BYTES];
        for (row, src) in raw.chunks_exact(blocks * Q4_1_BLOCK_BYTES).take(n).enumerate() {
            let (tile, lane) = (row / TILE, row % TILE);
            for (b, block) in src.chunks_exact(Q4_1_BLOCK_BYTES).enumerate() {
                let dst = &mut data[(tile * blocks + b) * TILE_BLOCK_BYTES..][..TILE_BLOCK_BYTES];
                dst[2 * lane..2 * lane + 2].copy_from_slice(&block[0..2]);
                dst[2 * TILE + 2 * lane..2 * TILE + 2 * lane + 2].copy_from_slice(&block[2..4]);
                // Value j of the block: low nibble of byte j (j < 16), high nibble of byte j − 16.
                let value = |j: usize| {
                    if j < 16 {
                        block[4 + j] & 0x0F
                    } else {
                        block[4 + j - 16] >> 4
                    }
                };
                for p in 0..4 {
                    for e in 0..4 {
                        dst[4 * TILE + 64 * p + 4 * lane + e] = value(8 * p + e) | (value(8 * p + 4 + e) << 4);
                    }
                }
            }
        }
        Ok(TiledQ4_1 { n, k, data })
    }

    /// y = x · Wᵀ for x (…, k) f32; y is (…, n).
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        if !available() {
            return Err(Error::msg("the tiled Q4_1 kernel needs AVX-512 with VNNI"));
        }
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.k) {
            return Err(Error::msg(format!(
                "Q4_1 product: input {dims:?} against a weight of {}×{}",
                self.n, self.k
            )));
        }
        let m = x.elem_count() / self.k;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let y = self.matmul_rows(&xs, m);
        let mut out = dims;
        *out.last_mut().unwrap() = self.n;
        Ok(Tensor::from_vec(y, out, x.device())?)
    }

    /// y (m × n, row-major) = x (m × k) · Wᵀ.
    fn matmul_rows(&self, x: &[f32], m: usize) -> Vec<f32> {
        let xq = quantize_rows(x, true);
        let (n, blocks) = (self.n, self.k / QK);
        let mut y = vec![0f32; m * n];
        let y_addr = y.as_mut_ptr() as usize;
        let run = |tiles: std::ops::Range<usize>| {
            for t in tiles {
                let w = &self.data[t * blocks * TILE_BLOCK_BYTES..(t + 1) * blocks * TILE_BLOCK_BYTES];
                let cols = TILE.min(n - t * TILE);
                for first in (0..m).step_by(GROUP) {
                    let rows = GROUP.min(m - first);
                    let at = first * blocks;
                    let out = tile_dot(
                        w,
                        &xq.values[at * QK..(at + rows * blocks) * QK],
                        &xq.scales[at..at + rows * blocks],
                        &xq.sums[at..at + rows * blocks],
                        rows,
                    );
                    for (r, lanes) in out.iter().take(rows).enumerate() {
                        // SAFETY: each (row, column) of y is written by exactly one work item, and y outlives the call.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut((y_addr as *mut f32).add((first + r) * n + t * TILE), cols)
                        };
                        dst.copy_from_slice(&lanes[..cols]);
                    }
                }
            }
        };
        candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(TILE), run);
        y
    }
}

/// One tile of W (`blocks` tile blocks) against `rows` (1..=8) quantized rows of x: 16 outputs per row.
fn tile_dot(w: &[u8], xv: &[i8], xd: &[f32], xs: &[f32], rows: usize) -> [[f32; TILE]; GROUP] {
    let blocks = xd.len() / rows;
    debug_assert!(w.len() == blocks * TILE_BLOCK_BYTES && xv.len() == xd.len() * QK && xs.len() == xd.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: callers checked `available()`; the lengths are those asserted above.
    unsafe {
        let (w, xv, xd, xs) = (w.as_ptr(), xv.as_ptr(), xd.as_ptr(), xs.as_ptr());
        match rows {
            1 => x86::tile_dot::<1>(w, xv, xd, xs, blocks),
            2 => x86::tile_dot::<2>(w, xv, xd, xs, blocks),
            3 => x86::tile_dot::<3>(w, xv, xd, xs, blocks),
            4 => x86::tile_dot::<4>(w, xv, xd, xs, blocks),
            5 => x86::tile_dot::<5>(w, xv, xd, xs, blocks),
            6 => x86::tile_dot::<6>(w, xv, xd, xs, blocks),
            7 => x86::tile_dot::<7>(w, xv, xd, xs, blocks),
            _ => x86::tile_dot::<8>(w, xv, xd, xs, blocks),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, xv, xd, xs, blocks);
        unreachable!("the tiled kernel is x86-64 only (`available()` is false elsewhere)")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{GROUP, QK, TILE, TILE_BLOCK_BYTES};
    use core::arch::x86_64::*;

    /// Row `r < G` of x is `xv[r·blocks·32..]`, its scales `xd[r·blocks..]` and d·Σq `xs[r·blocks..]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn tile_dot<const G: usize>(
        w: *const u8,
        xv: *const i8,
        xd: *const f32,
        xs: *const f32,
        blocks: usize,
    ) -> [[f32; TILE]; GROUP] {
        let mut acc = [_mm512_setzero_ps(); G];
        let low = _mm512_set1_epi8(0x0F);
        for b in 0..blocks {
            let tile = w.add(b * TILE_BLOCK_BYTES);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(tile as *const __m256i));
            let m = _mm512_cvtph_ps(_mm256_loadu_si256(tile.add(2 * TILE) as *const __m256i));
            // wq[2p]: values 8p..8p+4 of each row, wq[2p + 1]: values 8p+4..8p+8.
            let mut wq = [_mm512_setzero_si512(); 8];
            for p in 0..4 {
                let v = _mm512_loadu_si512(tile.add(4 * TILE + 64 * p) as *const __m512i);
                wq[2 * p] = _mm512_and_si512(v, low);
                wq[2 * p + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let at = r * blocks + b;
                let x = xv.add(at * QK) as *const i32;
                // Two independent chains: the even and the odd groups of four values.
                let mut even = _mm512_setzero_si512();
                let mut odd = _mm512_setzero_si512();
                for p in 0..4 {
                    even = _mm512_dpbusd_epi32(even, wq[2 * p], _mm512_set1_epi32(x.add(2 * p).read_unaligned()));
                    odd = _mm512_dpbusd_epi32(odd, wq[2 * p + 1], _mm512_set1_epi32(x.add(2 * p + 1).read_unaligned()));
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
                *acc = _mm512_fmadd_ps(dot, _mm512_mul_ps(d, _mm512_set1_ps(*xd.add(at))), *acc);
                *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(*xs.add(at)), *acc);
            }
        }
        let mut out = [[0f32; TILE]; GROUP];
        for (o, a) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), a);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The oracle independent of any kernel: Σ over blocks of the exact integer dot product, in f64, from the
    /// same quantized x and the dequantized W's d, m and q.
    fn reference(x: &[f32], m: usize, q: &QTensor) -> Vec<Vec<f64>> {
        let (n, k) = q.shape().dims2().unwrap();
        let blocks = k / QK;
        let xq = quantize_rows(x, true);
        let raw = q.data().unwrap();
        let half = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f64();
        (0..m)
            .map(|r| {
                (0..n)
                    .map(|j| {
                        (0..blocks)
                            .map(|b| {
                                let block = &raw[(j * blocks + b) * Q4_1_BLOCK_BYTES..][..Q4_1_BLOCK_BYTES];
                                let at = r * blocks + b;
                                let dot: i64 = (0..QK)
                                    .map(|v| {
                                        let w = if v < 16 {
                                            block[4 + v] & 0x0F
                                        } else {
                                            block[4 + v - 16] >> 4
                                        };
                                        w as i64 * xq.values[at * QK + v] as i64
                                    })
                                    .sum();
                                half(&block[0..2]) * xq.scales[at] as f64 * dot as f64
                                    + half(&block[2..4]) * xq.sums[at] as f64
                            })
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn tiled_product_equals_the_exact_block_sums() {
        if !available() {
            return; // the tiled kernel does not run here
        }
        let dev = Device::Cpu;
        // n = 37: two whole tiles and a padded one; m = 11: a group of 8 and one of 3; k = 96: three blocks.
        for (n, k, m) in [(37, 96, 11), (16, 32, 1), (192, 576, 2)] {
            let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let got = TiledQ4_1::new(&q)
                .unwrap()
                .matmul_t(&x)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let want = reference(&x.flatten_all().unwrap().to_vec1().unwrap(), m, &q);
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                for (j, (&g, &w)) in g.iter().zip(w).enumerate() {
                    // f32 sums of `blocks` terms: a few ulps of the largest partial sum.
                    let tol = 1e-5 * (1.0 + w.abs());
                    assert!((g as f64 - w).abs() <= tol, "{n}×{k}, ({r},{j}): {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn a_row_is_the_same_alone_or_beside_others() {
        if !available() {
            return;
        }
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.05, (40, 64), &dev).unwrap();
        let tiled = TiledQ4_1::new(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (10, 64), &dev).unwrap();
        let together = tiled.matmul_t(&x).unwrap().to_vec2::<f32>().unwrap();
        for (r, row) in together.iter().enumerate() {
            let alone = tiled
                .matmul_t(&x.narrow(0, r, 1).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert_eq!(&alone[0], row, "row {r}");
        }
    }
}

//! Q4_1 and Q8_0 weights rearranged in tiles of 16 rows, for decoding's products: AVX-512 VNNI for both, AVX2 for
//! Q4_1.
//!
//! The row-by-row kernel of [`super`] spends ~8 cycles on each 32-value block: the f16 scales converted one at a
//! time, one row's values unpacked, and a horizontal sum at the end of every row. Here W is rearranged once (the
//! same bytes, in another order) so that one 512-bit register holds four values of each of 16 rows: `vpdpbusd`
//! against four values of x broadcast then gives 16 rows' partial sums in 16 lanes, the 16 rows' scales convert
//! with one instruction, and no horizontal sum is left (the lanes are the outputs). The weight is still read front
//! to back once per product. Measured on SmolLM2's decoding (2 cores, Zen 4): its Q4_1 layers 5.6 → 2.9 ms a token.
//!
//! Layout: tiles of 16 rows (the last one padded with zero rows), each a run of `k / 32` tile blocks:
//! - Q4_1 (320 bytes): the 16 rows' f16 `d`, their 16 f16 `m`, then four 64-byte chunks. In chunk p, bytes
//!   4i..4i+4 belong to row i: their low nibbles are the row's values 8p..8p+4 of the block, their high nibbles
//!   values 8p+4..8p+8.
//! - Q8_0 (544 bytes): the 16 rows' f16 `d`, then eight 64-byte chunks; in chunk j, bytes 4i..4i+4 are row i's
//!   values 4j..4j+4 plus 128 (as u8: `vpdpbusd` multiplies unsigned by signed bytes; the 128 · Σxq it adds is
//!   taken off again, exactly, in integers).
//!
//! Each output is Σ_blocks (d·dx · Σ q·xq [+ m · dx·Σ xq]), each block's integer sum exact, the blocks summed in order
//! with fused multiply-adds: a row's numbers do not depend on the tile it sits in or on the rows of x beside it.
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use super::{quantize_rows, Format, QK};
use crate::{Error, Result};

/// Rows per tile: one per 32-bit lane of a 512-bit register.
const TILE: usize = 16;
/// Rows of x multiplied together against one tile of W.
const GROUP: usize = 8;

impl Format {
    /// Bytes of one tile block: 16 f16 scales (and for Q4_1 16 f16 minimums), then 16 rows × 32 values.
    fn tile_block_bytes(self) -> usize {
        match self {
            Format::Q4_1 => TILE * 2 + TILE * 2 + TILE * QK / 2,
            Format::Q8_0 => TILE * 2 + TILE * QK,
        }
    }
}

/// A Q4_1 or Q8_0 weight (n × k) in 16-row tiles; see the module docs.
#[derive(Debug, Clone)]
pub struct TiledWeight {
    format: Format,
    n: usize,
    k: usize,
    data: Vec<u8>,
}

/// Rows of x per pass over a tile without AVX-512 (16 vector registers).
const AVX2_GROUP: usize = 4;

/// Whether the tiled kernel runs on this CPU for `format`: Q4_1 with AVX2 (AVX-512 VNNI where the CPU has it), Q8_0
/// with AVX-512 VNNI only (its values plus 128 overflow `maddubs`' i16 pairs).
fn available_for(format: Format) -> bool {
    super::available() && (format == Format::Q4_1 || super::vnni512())
}

/// Whether `x · qᵀ` runs in the tiled kernel: a Q4_1 or Q8_0 weight on a CPU that has it for that type, f32 input —
/// unless candle repacks the Q8_0 weight for its own VNNI kernel (see `qgemv::candle_repacks`).
pub fn applies(x: &Tensor, q: &QTensor) -> bool {
    let Ok((n, k)) = q.shape().dims2() else { return false };
    let format_ok = match q.dtype() {
        GgmlDType::Q8_0 => available_for(Format::Q8_0) && !super::candle_repacks(n, k),
        GgmlDType::Q4_1 => available_for(Format::Q4_1),
        _ => false,
    };
    format_ok && x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

impl TiledWeight {
    /// Rearrange a Q4_1 or Q8_0 weight. An error for another type or a shape whose rows are not whole blocks.
    pub fn new(q: &QTensor) -> Result<Self> {
        let format = match q.dtype() {
            GgmlDType::Q4_1 => Format::Q4_1,
            GgmlDType::Q8_0 => Format::Q8_0,
            other => {
                return Err(Error::msg(format!(
                    "tiled weight from a {other:?} tensor (Q4_1 or Q8_0 only)"
                )))
            }
        };
        let (n, k) = q.shape().dims2()?;
        if !k.is_multiple_of(QK) {
            return Err(Error::msg(format!(
                "{format:?} weight {n}×{k}: rows are not whole blocks of {QK}"
            )));
        }
        let raw = q.data()?;
        let (blocks, block_bytes, tile_bytes) = (k / QK, format.block_bytes(), format.tile_block_bytes());
        let mut data = vec![0u8; n.div_ceil(TILE) * blocks * tile_bytes];
        for (row, src) in raw.chunks_exact(blocks * block_bytes).take(n).enumerate() {
            let (tile, lane) = (row / TILE, row % TILE);
            for (b, block) in src.chunks_exact(block_bytes).enumerate() {
                let dst = &mut data[(tile * blocks + b) * tile_bytes..][..tile_bytes];
                dst[2 * lane..2 * lane + 2].copy_from_slice(&block[0..2]);
                match format {
                    Format::Q4_1 => {
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
                    Format::Q8_0 => {
                        for (v, &q) in block[2..].iter().enumerate() {
                            // i8 → u8 plus 128: flipping the sign bit.
                            dst[2 * TILE + 64 * (v / 4) + 4 * lane + v % 4] = q ^ 0x80;
                        }
                    }
                }
            }
        }
        Ok(TiledWeight { format, n, k, data })
    }

    /// y = x · Wᵀ for x (…, k) f32; y is (…, n).
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        if !available_for(self.format) {
            return Err(Error::msg(format!(
                "the tiled {:?} kernel needs {}",
                self.format,
                match self.format {
                    Format::Q4_1 => "AVX2, FMA and F16C",
                    Format::Q8_0 => "AVX-512 with VNNI",
                }
            )));
        }
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.k) {
            return Err(Error::msg(format!(
                "{:?} product: input {dims:?} against a weight of {}×{}",
                self.format, self.n, self.k
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
        let xq = quantize_rows(x, self.format == Format::Q4_1);
        let (n, blocks, tile_bytes) = (self.n, self.k / QK, self.format.tile_block_bytes());
        let mut y = vec![0f32; m * n];
        let y_addr = y.as_mut_ptr() as usize;
        let vnni = super::vnni512();
        let group = if vnni { GROUP } else { AVX2_GROUP };
        let run = |tiles: std::ops::Range<usize>| {
            for t in tiles {
                let w = &self.data[t * blocks * tile_bytes..(t + 1) * blocks * tile_bytes];
                let cols = TILE.min(n - t * TILE);
                for first in (0..m).step_by(group) {
                    let rows = group.min(m - first);
                    let at = first * blocks;
                    let x = TileRows {
                        values: &xq.values[at * QK..(at + rows * blocks) * QK],
                        scales: &xq.scales[at..at + rows * blocks],
                        sums: xq.sums.get(at..at + rows * blocks).unwrap_or(&[]),
                        qsums: &xq.qsums[at..at + rows * blocks],
                        rows,
                    };
                    let out = tile_dot(self.format, w, &x, vnni);
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

/// `rows` (1..=8; 1..=4 without AVX-512) quantized rows of x, block-major per row: values, scales, d · Σq (Q4_1 only) and Σq per block.
struct TileRows<'a> {
    values: &'a [i8],
    scales: &'a [f32],
    sums: &'a [f32],
    qsums: &'a [i32],
    rows: usize,
}

/// One tile of W (its tile blocks, front to back) against the rows of x: 16 outputs per row, through AVX-512 VNNI
/// when `vnni`, else AVX2 (Q4_1 only). Both give the same outputs, bit for bit.
fn tile_dot(format: Format, w: &[u8], x: &TileRows, vnni: bool) -> [[f32; TILE]; GROUP] {
    let blocks = x.scales.len() / x.rows;
    debug_assert!(w.len() == blocks * format.tile_block_bytes() && x.values.len() == x.scales.len() * QK);
    debug_assert!(format == Format::Q8_0 || x.sums.len() == x.scales.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: callers checked `available_for(format)` (and `vnni512()` for `vnni`); the lengths are asserted above.
    unsafe {
        let (w, xv, xd, xs, xq) = (
            w.as_ptr(),
            x.values.as_ptr(),
            x.scales.as_ptr(),
            x.sums.as_ptr(),
            x.qsums.as_ptr(),
        );
        macro_rules! by_rows {
            ($kernel:ident, $($args:expr),*) => {
                match x.rows {
                    1 => x86::$kernel::<1>($($args),*),
                    2 => x86::$kernel::<2>($($args),*),
                    3 => x86::$kernel::<3>($($args),*),
                    4 => x86::$kernel::<4>($($args),*),
                    5 => x86::$kernel::<5>($($args),*),
                    6 => x86::$kernel::<6>($($args),*),
                    7 => x86::$kernel::<7>($($args),*),
                    _ => x86::$kernel::<8>($($args),*),
                }
            };
        }
        match (format, vnni) {
            (Format::Q4_1, true) => by_rows!(tile_dot_q4_1, w, xv, xd, xs, blocks),
            (Format::Q8_0, _) => by_rows!(tile_dot_q8_0, w, xv, xd, xq, blocks),
            (Format::Q4_1, false) => match x.rows {
                1 => x86::tile_dot_q4_1_avx2::<1>(w, xv, xd, xs, blocks),
                2 => x86::tile_dot_q4_1_avx2::<2>(w, xv, xd, xs, blocks),
                3 => x86::tile_dot_q4_1_avx2::<3>(w, xv, xd, xs, blocks),
                _ => x86::tile_dot_q4_1_avx2::<4>(w, xv, xd, xs, blocks),
            },
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, blocks, vnni);
        unreachable!("the tiled kernel is x86-64 only (`available_for` is false elsewhere)")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Format, GROUP, QK, TILE};
    use core::arch::x86_64::*;

    /// 16 rows' integer dot products with one block of x (32 values at `x`): `wq[j]` holds four values of each row,
    /// those that meet x's values 4j..4j+4, broadcast. Two independent chains, the even and the odd `j`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn block_dot(wq: &[__m512i; 8], x: *const i8) -> __m512i {
        let x = x as *const i32;
        let mut even = _mm512_setzero_si512();
        let mut odd = _mm512_setzero_si512();
        for p in 0..4 {
            even = _mm512_dpbusd_epi32(even, wq[2 * p], _mm512_set1_epi32(x.add(2 * p).read_unaligned()));
            odd = _mm512_dpbusd_epi32(odd, wq[2 * p + 1], _mm512_set1_epi32(x.add(2 * p + 1).read_unaligned()));
        }
        _mm512_add_epi32(even, odd)
    }

    /// Row `r < G` of x is `xv[r·blocks·32..]`, its scales `xd[r·blocks..]` and d·Σq `xs[r·blocks..]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn tile_dot_q4_1<const G: usize>(
        w: *const u8,
        xv: *const i8,
        xd: *const f32,
        xs: *const f32,
        blocks: usize,
    ) -> [[f32; TILE]; GROUP] {
        let mut acc = [_mm512_setzero_ps(); G];
        let low = _mm512_set1_epi8(0x0F);
        for b in 0..blocks {
            let tile = w.add(b * Format::Q4_1.tile_block_bytes());
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
                let dot = _mm512_cvtepi32_ps(block_dot(&wq, xv.add(at * QK)));
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

    /// [`tile_dot_q4_1`] in AVX2: each 64-byte chunk as two halves of 8 rows. `maddubs` multiplies the four-bit values
    /// (unsigned) by x's bytes into i16 pairs; over a block's eight groups of four they stay within
    /// 8 · 2 · 15 · 127 = 30480 (no saturation), and `madd` then sums each lane's pairs to i32: the integer sums
    /// `vpdpbusd` gives, followed by the same f32 steps, so the outputs are the VNNI kernel's bit for bit.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile_dot_q4_1_avx2<const G: usize>(
        w: *const u8,
        xv: *const i8,
        xd: *const f32,
        xs: *const f32,
        blocks: usize,
    ) -> [[f32; TILE]; GROUP] {
        let mut acc = [[_mm256_setzero_ps(); 2]; G];
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        for b in 0..blocks {
            let tile = w.add(b * Format::Q4_1.tile_block_bytes());
            for h in 0..2 {
                let d = _mm256_cvtph_ps(_mm_loadu_si128(tile.add(16 * h) as *const __m128i));
                let m = _mm256_cvtph_ps(_mm_loadu_si128(tile.add(2 * TILE + 16 * h) as *const __m128i));
                let mut wq = [_mm256_setzero_si256(); 8];
                for p in 0..4 {
                    let v = _mm256_loadu_si256(tile.add(4 * TILE + 64 * p + 32 * h) as *const __m256i);
                    wq[2 * p] = _mm256_and_si256(v, low);
                    wq[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let at = r * blocks + b;
                    let x = xv.add(at * QK) as *const i32;
                    let mut pairs = _mm256_setzero_si256();
                    for (j, wq) in wq.iter().enumerate() {
                        let xj = _mm256_set1_epi32(x.add(j).read_unaligned());
                        pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(*wq, xj));
                    }
                    let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                    acc[h] = _mm256_fmadd_ps(dot, _mm256_mul_ps(d, _mm256_set1_ps(*xd.add(at))), acc[h]);
                    acc[h] = _mm256_fmadd_ps(m, _mm256_set1_ps(*xs.add(at)), acc[h]);
                }
            }
        }
        let mut out = [[0f32; TILE]; GROUP];
        for (o, a) in out.iter_mut().zip(acc) {
            _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
        }
        out
    }

    /// Row `r < G` of x is `xv[r·blocks·32..]`, its scales `xd[r·blocks..]` and Σq `xq[r·blocks..]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn tile_dot_q8_0<const G: usize>(
        w: *const u8,
        xv: *const i8,
        xd: *const f32,
        xq: *const i32,
        blocks: usize,
    ) -> [[f32; TILE]; GROUP] {
        let mut acc = [_mm512_setzero_ps(); G];
        for b in 0..blocks {
            let tile = w.add(b * Format::Q8_0.tile_block_bytes());
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(tile as *const __m256i));
            let mut wq = [_mm512_setzero_si512(); 8];
            for (j, wq) in wq.iter_mut().enumerate() {
                *wq = _mm512_loadu_si512(tile.add(2 * TILE + 64 * j) as *const __m512i);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let at = r * blocks + b;
                // Σ (q + 128) · xq − 128 · Σ xq = Σ q · xq, exactly.
                let dot = _mm512_sub_epi32(block_dot(&wq, xv.add(at * QK)), _mm512_set1_epi32(128 * *xq.add(at)));
                *acc = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(dot),
                    _mm512_mul_ps(d, _mm512_set1_ps(*xd.add(at))),
                    *acc,
                );
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

    /// The oracle independent of the layout: candle's dequantized W times x as the kernel quantizes it
    /// (dx · xq, candle's own Q8_0 formula), summed in f64.
    fn reference(x: &Tensor, q: &QTensor) -> Vec<Vec<f64>> {
        let w = q.dequantize(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        let (m, k) = x.dims2().unwrap();
        let xq = quantize_rows(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), false);
        (0..m)
            .map(|r| {
                w.iter()
                    .map(|row| {
                        (0..k)
                            .map(|v| {
                                let at = r * k + v;
                                row[v] as f64 * xq.scales[at / QK] as f64 * xq.values[at] as f64
                            })
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn tiled_product_equals_the_dequantized_product_of_the_quantized_input() {
        let dev = Device::Cpu;
        // n = 37: two whole tiles and a padded one; m = 11: a group of 8 and one of 3; k = 96: three blocks.
        for (dtype, format) in [(GgmlDType::Q4_1, Format::Q4_1), (GgmlDType::Q8_0, Format::Q8_0)] {
            if !available_for(format) {
                continue; // Q8_0 tiles need AVX-512 VNNI
            }
            for (n, k, m) in [(37, 96, 11), (16, 32, 1), (192, 576, 2)] {
                let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
                let q = QTensor::quantize(&w, dtype).unwrap();
                let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
                let tiled = TiledWeight::new(&q).unwrap();
                let got = tiled.matmul_t(&x).unwrap().to_vec2::<f32>().unwrap();
                let want = reference(&x, &q);
                for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                    for (j, (&g, &w)) in g.iter().zip(w).enumerate() {
                        // f32 sums of `blocks` terms, and W's f32 rounding in the oracle: a few ulps.
                        let tol = 1e-5 * (1.0 + w.abs());
                        assert!((g as f64 - w).abs() <= tol, "{dtype:?} {n}×{k}, ({r},{j}): {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_is_the_same_alone_or_beside_others() {
        let dev = Device::Cpu;
        for (dtype, format) in [(GgmlDType::Q4_1, Format::Q4_1), (GgmlDType::Q8_0, Format::Q8_0)] {
            if !available_for(format) {
                continue; // Q8_0 tiles need AVX-512 VNNI
            }
            let w = Tensor::randn(0f32, 0.05, (40, 64), &dev).unwrap();
            let tiled = TiledWeight::new(&QTensor::quantize(&w, dtype).unwrap()).unwrap();
            let x = Tensor::randn(0f32, 1.0, (10, 64), &dev).unwrap();
            let together = tiled.matmul_t(&x).unwrap().to_vec2::<f32>().unwrap();
            for (r, row) in together.iter().enumerate() {
                let alone = tiled
                    .matmul_t(&x.narrow(0, r, 1).unwrap())
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                assert_eq!(&alone[0], row, "{dtype:?} row {r}");
            }
        }
    }

    #[test]
    fn the_avx2_kernel_gives_the_vnni_kernels_outputs() {
        if !super::super::vnni512() {
            return; // one of the two does not run here; the other is checked against the oracle above
        }
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.05, (37, 96), &dev).unwrap();
        let tiled = TiledWeight::new(&QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 96), &dev).unwrap();
        let xq = quantize_rows(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), true);
        let blocks = 3;
        let tile = &tiled.data[..blocks * Format::Q4_1.tile_block_bytes()];
        for rows in 1..=4 {
            let rows_x = TileRows {
                values: &xq.values[..rows * blocks * QK],
                scales: &xq.scales[..rows * blocks],
                sums: &xq.sums[..rows * blocks],
                qsums: &xq.qsums[..rows * blocks],
                rows,
            };
            let (avx2, vnni) = (
                tile_dot(Format::Q4_1, tile, &rows_x, false),
                tile_dot(Format::Q4_1, tile, &rows_x, true),
            );
            assert_eq!(avx2[..rows], vnni[..rows], "{rows} rows");
        }
    }

    #[test]
    fn other_types_are_refused() {
        let w = Tensor::randn(0f32, 0.05, (16, 256), &Device::Cpu).unwrap();
        let err = TiledWeight::new(&QTensor::quantize(&w, GgmlDType::Q4K).unwrap()).unwrap_err();
        assert!(err.to_string().contains("Q4_1 or Q8_0"), "{err}");
    }
}

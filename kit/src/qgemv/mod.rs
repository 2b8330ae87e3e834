//! Decoding's products with Q8_0 and Q4_1 weights on the CPU: y = x · Wᵀ for a few rows x (one per sequence being
//! decoded).
//!
//! Decoding is one such product per projection per token, and on a 2-core laptop it is most of a token's time.
//! candle's kernel for it calls out of the loop for two f16 → f32 conversions per 32-value block and keeps its one
//! accumulator on the stack (perf: ~10 cycles a block). Here W is read row by row, each block once loaded meets up to
//! four rows of x, the scales convert inline (F16C), and every accumulator stays in a register. For Q8_0 the
//! arithmetic is candle's: x is quantized to Q8_0 by the same formula, each block's integer dot product is exact, and the blocks of a row
//! are summed in the same order with the same scale products — so the outputs equal candle's bit for bit (tested),
//! and generation's numbers do not depend on which kernel ran.
//!
//! Q8_0 (GGML): blocks of 32 weights, each stored as an f16 scale `d` and 32 `i8` values `q`; w = d · q.
//! Q4_1 (SmolLM2's GGUF): an f16 scale `d` and minimum `m` and 32 four-bit `q`; w = d · q + m, so a block's product is
//! d·dx·Σ q·xq + m·dx·Σ xq. candle has only scalar code for Q4_1; this one is ~5× faster (`cargo bench -p kit
//! --bench qmatmul`) and lets the GGUF's Q4_1 layers stay as they are instead of being re-encoded as Q8_0.
//!
//! A model's layers take the faster [`tiled`] kernel wherever it runs (every Q4_1 weight on AVX2, Q8_0 with
//! AVX-512 VNNI: `Linear` keeps the tiles); this one serves the rest and direct calls of [`matmul_t`].
mod quantize;
pub mod tiled;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
#[cfg(not(target_arch = "x86_64"))]
use half::f16;

use crate::{Error, Result};
use quantize::quantize_rows;

const QK: usize = 32;
/// Bytes of one Q8_0 block: the f16 scale, then 32 values.
const BLOCK_BYTES: usize = 2 + QK;
/// Bytes of one Q4_1 block: the f16 scale `d` and minimum `m`, then 32 four-bit values packed two to a byte (value j
/// in the low nibble of byte j, value j + 16 in its high nibble); w = d · q + m.
const Q4_1_BLOCK_BYTES: usize = 4 + QK / 2;

/// The weight formats this kernel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Q8_0,
    Q4_1,
}

impl Format {
    fn block_bytes(self) -> usize {
        match self {
            Format::Q8_0 => BLOCK_BYTES,
            Format::Q4_1 => Q4_1_BLOCK_BYTES,
        }
    }
}

/// Whether this CPU runs the kernel (x86-64 with AVX2, FMA and F16C: every x86 laptop since 2013–2015).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether `x · qᵀ` runs here: a Q8_0 or Q4_1 weight on the CPU, f32 input, on a CPU with the kernel — unless
/// candle has a faster one for the shape.
pub fn applies(x: &Tensor, q: &QTensor) -> bool {
    let Ok((n, k)) = q.shape().dims2() else { return false };
    let format_ok = match q.dtype() {
        GgmlDType::Q8_0 => !candle_repacks(n, k),
        GgmlDType::Q4_1 => true,
        _ => false,
    };
    format_ok && x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && available()
}

/// candle 0.11.1 repacks a Q8_0 weight into 16-row tiles for VNNI dot products when the CPU has AVX-512 VNNI (or
/// AVX-VNNI), `k` is a multiple of 256 and `n` of 16 (`quantized::repack_x86::select`); that kernel is ~4× faster
/// than this one (`cargo bench -p kit --bench qmatmul`, 640×2048: 0.014 vs 0.063 ms at one row). SmolLM2's
/// down_proj (k = 1536) takes it; its other projections (k = 576) and Gemma 3's (k = 640) do not.
fn candle_repacks(n: usize, k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let vnni = (std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni"))
            || std::is_x86_feature_detected!("avxvnni");
        vnni && k.is_multiple_of(256) && n.is_multiple_of(16)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, k);
        false
    }
}

/// y = x · Wᵀ for x (…, k) f32 and W (n, k) Q8_0 or Q4_1; y is (…, n). An error where [`available`] does not hold.
pub fn matmul_t(x: &Tensor, q: &QTensor) -> Result<Tensor> {
    if !available() {
        return Err(Error::msg("qgemv needs an x86-64 CPU with AVX2, FMA and F16C"));
    }
    let (n, k) = q.shape().dims2()?;
    let dims = x.dims().to_vec();
    let format = match q.dtype() {
        GgmlDType::Q8_0 => Format::Q8_0,
        GgmlDType::Q4_1 => Format::Q4_1,
        other => return Err(Error::msg(format!("qgemv reads Q8_0 and Q4_1 weights, not {other:?}"))),
    };
    if dims.last() != Some(&k) || !k.is_multiple_of(QK) {
        return Err(Error::msg(format!(
            "{format:?} product: input {dims:?} against a weight of {n}×{k}"
        )));
    }
    let m = x.elem_count() / k;
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let w = q.data()?;
    let y = matmul_rows(&xs, m, k, &w, n, format);
    let mut out = dims;
    *out.last_mut().unwrap() = n;
    Ok(Tensor::from_vec(y, out, x.device())?)
}

/// y (m × n, row-major) = x (m × k) · Wᵀ, W given as the raw bytes of n rows of k/32 blocks of `format`.
fn matmul_rows(x: &[f32], m: usize, k: usize, w: &[u8], n: usize, format: Format) -> Vec<f32> {
    let xq = quantize_rows(x, format == Format::Q4_1);
    let kb = k / QK;
    let row_bytes = kb * format.block_bytes();
    assert!(
        w.len() >= n * row_bytes,
        "{format:?} weight of {} bytes for {n}×{k}",
        w.len()
    );
    let mut y = vec![0f32; m * n];
    let y_addr = y.as_mut_ptr() as usize;
    // Work items are rows of W, read front to back once each (interleaving several W rows defeats the hardware
    // prefetcher: measured 1.8× slower at one row of x). Each W block, once loaded, meets up to 4 rows of x.
    let run = |range: std::ops::Range<usize>| {
        for j in range {
            let w_row = &w[j * row_bytes..(j + 1) * row_bytes];
            for first in (0..m).step_by(GROUP) {
                let rows = GROUP.min(m - first);
                let xv = &xq.values[first * k..(first + rows) * k];
                let xd = &xq.scales[first * kb..(first + rows) * kb];
                let out = match format {
                    Format::Q8_0 => dot_group(w_row, xv, xd, rows),
                    Format::Q4_1 => dot_group_q4_1(w_row, xv, xd, &xq.sums[first * kb..(first + rows) * kb], rows),
                };
                for (r, v) in out.iter().take(rows).enumerate() {
                    // SAFETY: each (row, column) of y is written by exactly one work item, and y outlives the call.
                    unsafe { *(y_addr as *mut f32).add((first + r) * n + j) = *v };
                }
            }
        }
    };
    // candle's spinning pool: a thread wakes in well under a microsecond, where a rayon job takes several — there are
    // ~200 of these products per token.
    candle_core::utils::barrier_pool().execute_chunked(n, run);
    y
}

/// Rows of x multiplied together against one row of W.
const GROUP: usize = 4;

/// Whether the CPU has AVX-512 (F, BW, DQ) with VNNI (`vpdpbusd`: four u8 × i8 products summed into each i32 lane).
fn vnni512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Dot products of one row of W with `rows` (1..=4) quantized rows of x (`xv`: rows × k values, `xd`: their scales).
fn dot_group(w: &[u8], xv: &[i8], xd: &[f32], rows: usize) -> [f32; GROUP] {
    let blocks = xd.len() / rows;
    debug_assert!(w.len() == blocks * BLOCK_BYTES && xv.len() == xd.len() * QK && (1..=GROUP).contains(&rows));
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `matmul_t` checked `available()`; the lengths are those asserted above.
        unsafe {
            let (w, xv, xd) = (w.as_ptr(), xv.as_ptr(), xd.as_ptr());
            match rows {
                1 => x86::dot_group::<1>(w, xv, xd, blocks),
                2 => x86::dot_group::<2>(w, xv, xd, blocks),
                3 => x86::dot_group::<3>(w, xv, xd, blocks),
                _ => x86::dot_group::<4>(w, xv, xd, blocks),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut out = [0f32; GROUP];
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let (xb, db) = (
                &xv[r * blocks * QK..(r + 1) * blocks * QK],
                &xd[r * blocks..(r + 1) * blocks],
            );
            for (wb, (xb, &dx)) in w.chunks_exact(BLOCK_BYTES).zip(xb.chunks_exact(QK).zip(db)) {
                let dw = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
                let dot: i32 = wb[2..].iter().zip(xb).map(|(&a, &b)| a as i8 as i32 * b as i32).sum();
                *o += dw * dx * dot as f32;
            }
        }
        out
    }
}

/// [`dot_group`] for a Q4_1 row of W; `xs`: d · Σq of each block of x.
fn dot_group_q4_1(w: &[u8], xv: &[i8], xd: &[f32], xs: &[f32], rows: usize) -> [f32; GROUP] {
    let blocks = xd.len() / rows;
    debug_assert!(w.len() == blocks * Q4_1_BLOCK_BYTES && xv.len() == xd.len() * QK && xs.len() == xd.len());
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as in `dot_group`.
        unsafe {
            let (w, xv, xd, xs) = (w.as_ptr(), xv.as_ptr(), xd.as_ptr(), xs.as_ptr());
            match rows {
                1 => x86::dot_group_q4_1::<1>(w, xv, xd, xs, blocks),
                2 => x86::dot_group_q4_1::<2>(w, xv, xd, xs, blocks),
                3 => x86::dot_group_q4_1::<3>(w, xv, xd, xs, blocks),
                _ => x86::dot_group_q4_1::<4>(w, xv, xd, xs, blocks),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut out = [0f32; GROUP];
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            for (b, wb) in w.chunks_exact(Q4_1_BLOCK_BYTES).enumerate() {
                let (d, m) = (
                    f16::from_le_bytes([wb[0], wb[1]]).to_f32(),
                    f16::from_le_bytes([wb[2], wb[3]]).to_f32(),
                );
                let xb = &xv[(r * blocks + b) * QK..(r * blocks + b + 1) * QK];
                let dot: i32 = (0..QK)
                    .map(|j| {
                        let byte = wb[4 + j % 16];
                        let q = if j < 16 { byte & 0x0F } else { byte >> 4 };
                        q as i32 * xb[j] as i32
                    })
                    .sum();
                *o += d * xd[r * blocks + b] * dot as f32 + m * xs[r * blocks + b];
            }
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{BLOCK_BYTES, QK};
    use core::arch::x86_64::*;

    /// The f32 value of an f16 given by its bits.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn half_to_f32(p: *const u8) -> f32 {
        let bits = (p as *const u16).read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// Σ over 32 lanes of x·w as 8 f32 partial sums: |x| · (w signed like x), pairwise to i16, then to i32.
    /// The i16 step cannot saturate: a pair is at most 2 · 128 · 127.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block_dot(x: __m256i, w: __m256i) -> __m256 {
        let x_abs = _mm256_sign_epi8(x, x);
        let w_signed = _mm256_sign_epi8(w, x);
        let pairs = _mm256_maddubs_epi16(x_abs, w_signed);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), pairs))
    }

    /// The sum of the 8 lanes, added in candle's order (high half onto low, then pairs, then the last two).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum(v: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
    }

    /// Row `r < G` of x is `xv[r·blocks·32..]` with scales `xd[r·blocks..]`; W's row is `blocks` Q8_0 blocks at `w`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_group<const G: usize>(
        w: *const u8,
        xv: *const i8,
        xd: *const f32,
        blocks: usize,
    ) -> [f32; super::GROUP] {
        let mut acc = [_mm256_setzero_ps(); G];
        for b in 0..blocks {
            let block = w.add(b * BLOCK_BYTES);
            let dw = half_to_f32(block);
            let wq = _mm256_loadu_si256(block.add(2) as *const __m256i);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_si256(xv.add((r * blocks + b) * QK) as *const __m256i);
                let d = _mm256_set1_ps(dw * *xd.add(r * blocks + b));
                *acc = _mm256_fmadd_ps(d, block_dot(x, wq), *acc);
            }
        }
        let mut out = [0f32; super::GROUP];
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum(a);
        }
        out
    }

    /// Σ over blocks of d·dx·Σ q·xq + m·(dx·Σ xq) for a Q4_1 row of W. The four-bit values are unsigned, so they
    /// multiply the signed activations directly (pairs of products stay below 2 · 15 · 128 in i16).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_group_q4_1<const G: usize>(
        w: *const u8,
        xv: *const i8,
        xd: *const f32,
        xs: *const f32,
        blocks: usize,
    ) -> [f32; super::GROUP] {
        let mut acc = [_mm256_setzero_ps(); G];
        let mut offset = [0f32; G];
        let low = _mm_set1_epi8(0x0F);
        for b in 0..blocks {
            let block = w.add(b * super::Q4_1_BLOCK_BYTES);
            let d = half_to_f32(block);
            let m = half_to_f32(block.add(2));
            let packed = _mm_loadu_si128(block.add(4) as *const __m128i);
            // Values 0..16 in the low lane, 16..32 in the high one.
            let wq = _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16(packed, 4), low),
                _mm_and_si128(packed, low),
            );
            for r in 0..G {
                let x = _mm256_loadu_si256(xv.add((r * blocks + b) * QK) as *const __m256i);
                let pairs = _mm256_maddubs_epi16(wq, x);
                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), pairs));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * *xd.add(r * blocks + b)), dot, acc[r]);
                offset[r] += m * *xs.add(r * blocks + b);
            }
        }
        let mut out = [0f32; super::GROUP];
        for r in 0..G {
            out[r] = hsum(acc[r]) + offset[r];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module};

    #[test]
    fn equals_candles_quantized_kernel() {
        if !available() {
            return; // nothing to compare: candle's kernel runs instead
        }
        let dev = Device::Cpu;
        // Rows of x from 1 to 9: groups of 4 and a short last group. k = 96: a shape candle does not repack.
        let w = Tensor::randn(0f32, 0.05, (1001, 96), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let mm = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        for m in [1, 2, 5, 9] {
            let x = Tensor::randn(0f32, 1.0, (m, 96), &dev).unwrap();
            let want = mm.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let got = matmul_t(&x, &q).unwrap().to_vec2::<f32>().unwrap();
            assert_eq!(got, want, "{m} rows: the same sums, in the same order");
        }
    }

    #[test]
    fn approximates_the_dense_product_within_activation_rounding() {
        // The oracle independent of candle's kernel: x · deq(W)ᵀ in f32. Quantizing x to 8 bits per block of 32
        // moves each term by at most half a step, |x|max/254 per block.
        let dev = Device::Cpu;
        // Q4_1: rows in groups of 4 and a short last group (m = 6, 9), three blocks a row (k = 96).
        for (dtype, m, k) in [
            (GgmlDType::Q8_0, 3, 64),
            (GgmlDType::Q4_1, 1, 64),
            (GgmlDType::Q4_1, 6, 64),
            (GgmlDType::Q4_1, 9, 96),
            (GgmlDType::Q4_1, 1, 32),
        ] {
            let w = Tensor::randn(0f32, 0.05, (37, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let dense = x
                .matmul(&q.dequantize(&dev).unwrap().t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let got = matmul_t(&x, &q).unwrap().to_vec2::<f32>().unwrap();
            let xs = x.to_vec2::<f32>().unwrap();
            let ws = q.dequantize(&dev).unwrap().to_vec2::<f32>().unwrap();
            for (r, row) in got.iter().enumerate() {
                for (j, &y) in row.iter().enumerate() {
                    let bound: f32 = xs[r]
                        .chunks(32)
                        .zip(ws[j].chunks(32))
                        .map(|(xb, wb)| {
                            let step = xb.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                            wb.iter().map(|v| v.abs()).sum::<f32>() * step / 2.0
                        })
                        .sum();
                    assert!(
                        (y - dense[r][j]).abs() <= bound * 1.01 + 1e-5,
                        "{dtype:?} ({r},{j}): {y} vs {}",
                        dense[r][j]
                    );
                }
            }
        }
    }

    /// A row's outputs do not depend on the rows decoded beside it (batched and single generation agree).
    #[test]
    fn each_row_is_the_same_alone_or_in_a_group() {
        if !available() {
            return; // the kernel does not run here
        }
        let dev = Device::Cpu;
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let w = Tensor::randn(0f32, 0.05, (19, 96), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let x = Tensor::randn(0f32, 1.0, (9, 96), &dev).unwrap();
            let together = matmul_t(&x, &q).unwrap().to_vec2::<f32>().unwrap();
            for (r, row) in together.iter().enumerate() {
                let alone = matmul_t(&x.narrow(0, r, 1).unwrap(), &q)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                assert_eq!(&alone[0], row, "{dtype:?} row {r}");
            }
        }
    }
}

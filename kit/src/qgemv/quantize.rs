//! Activations to Q8_0 for the quantized products: each block of 32 values of x as a scale and 32 `i8`, by
//! candle's formula, so that kit's kernels and candle's see the same integers.
use half::f16;

use super::{available, QK};

/// Rows of x quantized to Q8_0 exactly as candle's `BlockQ8_0::from_float` does, the scales kept as the f32 value of
/// their f16 rounding (what candle multiplies by). `sums`: d · Σq of each block, for Q4_1's offset term m · Σx (empty
/// for Q8_0, which has none); `qsums`: Σq of each block.
pub(super) struct QuantizedRows {
    pub scales: Vec<f32>,
    pub values: Vec<i8>,
    pub sums: Vec<f32>,
    pub qsums: Vec<i32>,
}

pub(super) fn quantize_rows(x: &[f32], with_sums: bool) -> QuantizedRows {
    let blocks = x.len() / QK;
    let mut scales = Vec::with_capacity(blocks);
    let mut values = vec![0i8; x.len()];
    let mut sums = Vec::with_capacity(blocks);
    let mut qsums = Vec::with_capacity(blocks);
    let simd = available();
    for (xs, qs) in x.chunks_exact(QK).zip(values.chunks_exact_mut(QK)) {
        let (d, qsum) = if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` checked AVX2; both blocks hold 32 values.
            unsafe {
                x86::quantize_block(xs.as_ptr(), qs.as_mut_ptr())
            }
            #[cfg(not(target_arch = "x86_64"))]
            quantize_block(xs, qs)
        } else {
            quantize_block(xs, qs)
        };
        let d = f16::from_f32(d).to_f32();
        scales.push(d);
        qsums.push(qsum);
        if with_sums {
            sums.push(d * qsum as f32);
        }
    }
    QuantizedRows {
        scales,
        values,
        sums,
        qsums,
    }
}

/// One block of 32 values to Q8_0 by candle's formula: d = max|x| / 127, q = round(x / d) (halves away from zero).
/// Returns d (before its f16 rounding) and Σq.
fn quantize_block(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(xs) {
        *q = (v * id).round() as i8;
    }
    (d, qs.iter().map(|&q| q as i32).sum())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// [`super::quantize_block`] in AVX2: the same f32 products, and round-half-away-from-zero done exactly
    /// (truncate, then step away from zero where the dropped fraction is at least one half).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_block(xs: *const f32, qs: *mut i8) -> (f32, i32) {
        let v: [__m256; 4] = core::array::from_fn(|i| _mm256_loadu_ps(xs.add(8 * i)));
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        let m = v.iter().fold(_mm256_setzero_ps(), |a, &x| {
            _mm256_max_ps(a, _mm256_and_ps(x, abs_mask))
        });
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        let one = _mm256_set1_ps(1.0);
        let q: [__m256i; 4] = core::array::from_fn(|i| {
            let y = _mm256_mul_ps(v[i], id);
            let t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let frac = _mm256_and_ps(_mm256_sub_ps(y, t), abs_mask);
            let away = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5), _CMP_GE_OQ), one);
            _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_or_ps(away, _mm256_and_ps(y, sign_mask))))
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        // i32 → i8 (|q| ≤ 127: no saturation): the packs interleave 128-bit lanes, the permute restores the order.
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qs as *mut __m256i, ordered);
        (d, _mm_cvtsi128_si32(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn vector_quantization_equals_candles_formula() {
        if !available() {
            return;
        }
        // Random blocks, and blocks whose scaled values land on halves (±0.5, ±1.5, …: the rounding ties) and zeros.
        let mut blocks: Vec<Vec<f32>> = (0..50)
            .map(|i| {
                Tensor::randn(0f32, 1.0 + i as f32, 32, &Device::Cpu)
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        blocks.push((0..32).map(|j| if j == 0 { 127.0 } else { j as f32 - 16.5 }).collect());
        blocks.push((0..32).map(|j| if j == 0 { -127.0 } else { 0.5 - j as f32 }).collect());
        blocks.push(vec![0.0; 32]);
        for xs in &blocks {
            let (mut want, mut got) = ([0i8; 32], [0i8; 32]);
            let a = quantize_block(xs, &mut want);
            // SAFETY: `available()` holds; 32 values each.
            let b = unsafe { x86::quantize_block(xs.as_ptr(), got.as_mut_ptr()) };
            assert_eq!((got, b), (want, a), "{xs:?}");
        }
    }
}

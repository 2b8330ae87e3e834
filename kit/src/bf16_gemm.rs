//! Frozen-base products in bf16 with f32 accumulation, for training with `TrainingArguments::bf16`.
//!
//! QLoRA's recipe (Dettmers et al. 2023, §3) computes with a bf16 copy of the frozen 4-bit weights; PyTorch's bf16
//! autocast does the same for every linear layer. Here both factors of a frozen product are rounded to bf16 (round
//! to nearest even) and the products are summed in f32: y = bf16(x) · bf16(W)ᵀ for the forward and
//! ∂x = bf16(∂y) · bf16(W) for the backward. LoRA's A and B, their products, the residual stream and the optimizer
//! state stay f32.
//!
//! On a CPU with AVX-512 BF16 (detected at run time) a kernel of ours multiplies: `vdpbf16ps` adds two bf16
//! products into each of 16 f32 lanes, twice the multiply–adds of an f32 FMA per instruction, from half the bytes.
//! W is packed once per layer, for both products. Elsewhere the same rounded values are multiplied by the f32 GEMM,
//! so a run means the same arithmetic on every machine up to the order of the f32 sums (and the kernel's flush of
//! subnormal inputs to zero).
use std::sync::Arc;

use candle_core::{CpuStorage, DType, Storage, Tensor};

use crate::Result;

/// Output columns per panel: two vectors of 16 f32 lanes.
const NR: usize = 32;
/// Rows per micro-tile: 2 × 12 = 24 accumulators of the 32 vector registers AVX-512 has.
const MR: usize = 12;
/// Rows per block of the input: a block's bf16 rows stay in L2 while every panel of W passes by.
const MC: usize = 16 * MR;

/// Whether the CPU runs the bf16 kernel (AVX-512 BF16); elsewhere the rounded values go through the f32 GEMM.
pub fn kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A frozen weight W (out, in) ready for bf16 products: packed for the kernel, or rounded to bf16 values (as f32)
/// where the kernel does not run.
#[derive(Clone)]
pub struct Bf16Weight {
    out_features: usize,
    in_features: usize,
    form: Form,
}

#[derive(Clone)]
enum Form {
    /// Panels for y = x·Wᵀ (B = Wᵀ) and for ∂x = ∂y·W (B = W).
    Packed {
        forward: Arc<PackedB>,
        backward: Arc<PackedB>,
    },
    /// W's values rounded to bf16, kept as f32 for candle's GEMM.
    Rounded(Tensor),
}

impl std::fmt::Debug for Bf16Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match self.form {
            Form::Packed { .. } => "packed",
            Form::Rounded(_) => "rounded",
        };
        write!(f, "Bf16Weight({}×{}, {form})", self.out_features, self.in_features)
    }
}

impl Bf16Weight {
    /// Round and pack `w` (out, in), a dense f32 tensor.
    pub fn new(w: &Tensor) -> Result<Self> {
        Self::with_kernel(w, kernel_available())
    }

    /// As [`Bf16Weight::new`], for the kernel or (`false`) the rounded f32 form.
    fn with_kernel(w: &Tensor, kernel: bool) -> Result<Self> {
        let (out_features, in_features) = w.dims2()?;
        let form = if kernel && w.device().is_cpu() {
            let values = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            // W is (out, in) row-major. Forward: B(k, j) = W[j][k]; backward: B(k, j) = W[k][j].
            let forward = PackedB::transposed(&values, out_features, in_features);
            let backward = PackedB::direct(&values, out_features, in_features);
            Form::Packed {
                forward: Arc::new(forward),
                backward: Arc::new(backward),
            }
        } else {
            Form::Rounded(round_to_bf16(&w.to_dtype(DType::F32)?)?)
        };
        Ok(Bf16Weight {
            out_features,
            in_features,
            form,
        })
    }

    /// y = bf16(x) · bf16(W)ᵀ for x (…, in), summed in f32; f32 out.
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        match &self.form {
            Form::Packed { forward, .. } => product(x, forward, self.out_features),
            Form::Rounded(w) => crate::quant::matmul_t(&round_to_bf16(x)?, w),
        }
    }

    /// ∂x = bf16(g) · bf16(W) for g (…, out), summed in f32; f32 out.
    pub fn matmul(&self, g: &Tensor) -> Result<Tensor> {
        match &self.form {
            Form::Packed { backward, .. } => product(g, backward, self.in_features),
            Form::Rounded(w) => crate::quant::matmul(&round_to_bf16(g)?, w),
        }
    }
}

/// `x`'s values rounded to the nearest bf16 (ties to even), as f32.
pub fn round_to_bf16(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)
}

/// y = x · B for x (…, k) and B packed (k, n): the leading dimensions are folded into rows.
fn product(x: &Tensor, b: &PackedB, n: usize) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims
        .last()
        .ok_or_else(|| crate::Error::msg("bf16 product of a scalar"))?;
    if k != b.k {
        return Err(crate::Error::msg(format!(
            "bf16 product: input has {k} features, weight {}",
            b.k
        )));
    }
    let rows = x.elem_count() / k.max(1);
    // x's values read in place (no copy before the packing, which is the copy the kernel needs).
    let x32 = x.to_dtype(DType::F32)?.contiguous()?;
    let a = {
        let (storage, layout) = x32.storage_and_layout();
        match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) => PackedA::pack(&v[start..end], rows, k),
            _ => return Err(crate::Error::msg("bf16 product: the kernel reads f32 input on the CPU")),
        }
    };
    let mut y = vec![0f32; rows * n];
    gemm(&a, b, &mut y);
    let mut out = dims;
    *out.last_mut().unwrap() = n;
    Ok(Tensor::from_vec(y, out, x.device())?)
}

/// bf16 bits of `v`, round to nearest even (as `vcvtne2ps2bf16` rounds the inputs; NaN stays NaN). Plain integer
/// arithmetic, so that the packing loops vectorize.
#[inline(always)]
fn bf16_bits(v: f32) -> u32 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return (u >> 16) | 0x40;
    }
    (u + 0x7fff + ((u >> 16) & 1)) >> 16
}

/// Two values as one u32 of bf16 bits, `lo` in the low half (the lower k index of a pair).
#[inline(always)]
fn bf16_pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

/// B (k, n) as the kernel reads it: panels of NR columns; within a panel, for each pair of rows (2p, 2p+1), the NR
/// columns' two bf16 values side by side in one u32 (low half: row 2p). Layout [panel][pair][column], zero-padded
/// to an even k and a whole last panel.
struct PackedB {
    k: usize,
    pairs: usize,
    panels: usize,
    data: Vec<u32>,
}

impl PackedB {
    /// B = Wᵀ for W (n, k) row-major (`w`): a panel's column c is W's row, read along its length.
    fn transposed(w: &[f32], n: usize, k: usize) -> Self {
        Self::build(k, n, |panel, dst, pairs| {
            for c in 0..NR.min(n - panel * NR) {
                let row = &w[(panel * NR + c) * k..(panel * NR + c + 1) * k];
                for p in 0..k / 2 {
                    dst[p * NR + c] = bf16_pair(row[2 * p], row[2 * p + 1]);
                }
                if k % 2 == 1 {
                    dst[(pairs - 1) * NR + c] = bf16_pair(row[k - 1], 0.0);
                }
            }
        })
    }

    /// B = W for W (k, n) row-major (`w`): a pair is two of W's rows, a panel NR of their columns.
    fn direct(w: &[f32], k: usize, n: usize) -> Self {
        Self::build(k, n, |panel, dst, pairs| {
            let (first, cols) = (panel * NR, NR.min(n - panel * NR));
            for p in 0..pairs {
                let lo = &w[2 * p * n + first..2 * p * n + first + cols];
                let out = &mut dst[p * NR..p * NR + cols];
                if 2 * p + 1 < k {
                    let hi = &w[(2 * p + 1) * n + first..(2 * p + 1) * n + first + cols];
                    for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
                        *o = bf16_pair(l, h);
                    }
                } else {
                    for (o, &l) in out.iter_mut().zip(lo) {
                        *o = bf16_pair(l, 0.0);
                    }
                }
            }
        })
    }

    /// Panels filled in parallel by `fill(panel, its zeroed slice, pairs)`.
    fn build(k: usize, n: usize, fill: impl Fn(usize, &mut [u32], usize) + Sync) -> Self {
        use rayon::prelude::*;
        let (pairs, panels) = (k.div_ceil(2), n.div_ceil(NR));
        let mut data = vec![0u32; panels * pairs * NR];
        data.par_chunks_mut(pairs * NR)
            .enumerate()
            .for_each(|(panel, dst)| fill(panel, dst, pairs));
        PackedB { k, pairs, panels, data }
    }
}

/// The input x (rows, k) in bf16, in tiles of MR rows: [tile][pair][row], zero-padded like [`PackedB`].
struct PackedA {
    rows: usize,
    pairs: usize,
    data: Vec<u32>,
}

impl PackedA {
    fn pack(x: &[f32], rows: usize, k: usize) -> Self {
        use rayon::prelude::*;
        let pairs = k.div_ceil(2);
        let tiles = rows.div_ceil(MR);
        let mut data = vec![0u32; tiles * pairs * MR];
        data.par_chunks_mut(pairs * MR).enumerate().for_each(|(tile, dst)| {
            for r in 0..MR.min(rows - tile * MR) {
                let row = &x[(tile * MR + r) * k..(tile * MR + r + 1) * k];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `PackedA` is only built when `kernel_available()` (AVX-512 F and BF16 are present).
                unsafe {
                    kernel::pack_row(row, dst, r)
                };
                #[cfg(not(target_arch = "x86_64"))]
                for p in 0..pairs {
                    dst[p * MR + r] = bf16_pair(row[2 * p], row.get(2 * p + 1).copied().unwrap_or(0.0));
                }
            }
        });
        PackedA { rows, pairs, data }
    }
}

/// y (rows, n) = A · B, threads splitting blocks of MC rows × one panel.
fn gemm(a: &PackedA, b: &PackedB, y: &mut [f32]) {
    use rayon::prelude::*;
    let n = y.len() / a.rows.max(1);
    let blocks = a.rows.div_ceil(MC);
    let out = SendPtr(y.as_mut_ptr());
    (0..blocks * b.panels).into_par_iter().for_each(|task| {
        let (block, panel) = (task / b.panels, task % b.panels);
        let cols = NR.min(n - panel * NR);
        let b_panel = &b.data[panel * b.pairs * NR..(panel + 1) * b.pairs * NR];
        let first_tile = block * MC / MR;
        for tile in first_tile..(first_tile + MC / MR).min(a.rows.div_ceil(MR)) {
            let rows = MR.min(a.rows - tile * MR);
            let a_tile = &a.data[tile * a.pairs * MR..(tile + 1) * a.pairs * MR];
            let c = out.get().wrapping_add(tile * MR * n + panel * NR);
            // SAFETY: each task writes its own rows × columns of `y` (rows < a.rows, columns < n), and the
            // kernel is only reached when the CPU has AVX-512 F and BF16 (`PackedB` is built only then).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                kernel::tile(a_tile, b_panel, a.pairs, c, n, rows, cols)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (a_tile, b_panel, c, rows, cols);
        }
    });
}

/// A raw output pointer shared by the tasks of [`gemm`], which write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: see `gemm`: tasks write disjoint elements.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{bf16_pair, MR, NR};
    use std::arch::x86_64::*;

    /// One row of x into its tile: 32 f32 at a time to bf16 (`vcvtne2ps2bf16`), pairs scattered with stride MR.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pack_row(row: &[f32], dst: &mut [u32], r: usize) {
        let k = row.len();
        let mut p = 0;
        let mut pairs = [0u32; 16];
        while 2 * p + 32 <= k {
            let lo = _mm512_loadu_ps(row.as_ptr().add(2 * p));
            let hi = _mm512_loadu_ps(row.as_ptr().add(2 * p + 16));
            let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_epi32(pairs.as_mut_ptr() as *mut i32, bf);
            for (i, &v) in pairs.iter().enumerate() {
                dst[(p + i) * MR + r] = v;
            }
            p += 16;
        }
        while 2 * p < k {
            dst[p * MR + r] = bf16_pair(row[2 * p], row.get(2 * p + 1).copied().unwrap_or(0.0));
            p += 1;
        }
    }

    /// C (rows ≤ MR, cols ≤ NR) = A tile · B panel over `pairs` pairs of k; C's rows are `ldc` apart.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile(a: &[u32], b: &[u32], pairs: usize, c: *mut f32, ldc: usize, rows: usize, cols: usize) {
        debug_assert!(a.len() >= pairs * MR && b.len() >= pairs * NR);
        let mut acc0 = [_mm512_setzero_ps(); MR];
        let mut acc1 = [_mm512_setzero_ps(); MR];
        let (a, b) = (a.as_ptr(), b.as_ptr());
        for p in 0..pairs {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_epi32(b.add(p * NR) as *const i32));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_epi32(b.add(p * NR + 16) as *const i32));
            for r in 0..MR {
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(p * MR + r) as i32));
                acc0[r] = _mm512_dpbf16_ps(acc0[r], x, b0);
                acc1[r] = _mm512_dpbf16_ps(acc1[r], x, b1);
            }
        }
        let mask = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
        let (m0, m1) = (mask(cols), mask(cols.saturating_sub(16)));
        for r in 0..rows {
            _mm512_mask_storeu_ps(c.add(r * ldc), m0, acc0[r]);
            _mm512_mask_storeu_ps(c.add(r * ldc + 16), m1, acc1[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Σ_k bf16(x)·bf16(w) in f64: the closed form both paths must reach, up to f32 summation.
    fn oracle(x: &[f32], w: &[f32], rows: usize, k: usize, n: usize, transposed: bool) -> Vec<f64> {
        let r = |v: f32| half::bf16::from_f32(v).to_f32() as f64;
        let mut y = vec![0f64; rows * n];
        for i in 0..rows {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|t| r(x[i * k + t]) * r(if transposed { w[j * k + t] } else { w[t * n + j] }))
                    .sum();
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Odd shapes: a partial tile of rows, a partial panel of columns, an odd k, more than one block of rows.
    #[test]
    fn bf16_products_equal_the_rounded_closed_form() {
        let dev = Device::Cpu;
        for (rows, k, n) in [(13, 35, 37), (MC + 5, 64, 33), (1, 7, 3)] {
            let w = values(n * k, 1);
            let x = values(rows * k, 2);
            let g = values(rows * n, 3);
            for kernel in [false, kernel_available()] {
                let weight =
                    Bf16Weight::with_kernel(&Tensor::from_vec(w.clone(), (n, k), &dev).unwrap(), kernel).unwrap();
                let x_t = Tensor::from_vec(x.clone(), (rows, k), &dev).unwrap();
                let g_t = Tensor::from_vec(g.clone(), (1, rows, n), &dev).unwrap();
                let y = weight
                    .matmul_t(&x_t)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let dx = weight.matmul(&g_t).unwrap();
                assert_eq!(dx.dims(), &[1, rows, k]);
                let dx = dx.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                // W (n, k) read as the forward's Bᵀ, and as the backward's B (n, k).
                let checks = [
                    (y, oracle(&x, &w, rows, k, n, true), k),
                    (dx, oracle(&g, &w, rows, n, k, false), n),
                ];
                for (got, want, terms) in checks {
                    for (a, b) in got.iter().zip(&want) {
                        // f32 sums of `terms` products of magnitude ≤ 1.
                        assert!(
                            (*a as f64 - b).abs() <= 1e-6 * terms as f64,
                            "{rows}×{k}×{n} {kernel}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    /// The rounding is bf16's: values that bf16 holds come through unchanged, others move to a neighbour.
    #[test]
    fn products_differ_from_f32_by_bf16_rounding_only() {
        let dev = Device::Cpu;
        let (rows, k, n) = (4, 2, 1);
        let w = Tensor::from_vec(vec![1.0f32 + 1.0 / 256.0, 1.0], (n, k), &dev).unwrap();
        let x = Tensor::from_vec([1.0f32, 0.5].repeat(rows), (rows, k), &dev).unwrap();
        let y = Bf16Weight::new(&w)
            .unwrap()
            .matmul_t(&x)
            .unwrap()
            .flatten_all()
            .unwrap();
        // 1 + 2⁻⁸ is a tie between 1 and 1 + 2⁻⁷; ties go to even (1.0): 1·1 + 0.5·1.
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![1.5; rows]);
    }
}

//! Frozen-base matmul on the CPU: candle's quantized kernel vs dequantize-then-GEMM, by row count, for the quant types
//! kit meets (GGUF Q4_K_M layers, SmolLM2's Q4_1, Q8_0 re-encodings, `load_in_4bit`'s Q4K/Q4_0), plus the backward
//! product ∂L/∂x = g · deq(W). This is the measurement behind `quant::dequantize_above`.
//! Run: `cargo bench -p kit --bench qmatmul`.
use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use kit::model::FrozenWeight;
use kit::quant::{dense_weight, matmul, matmul_t};

/// Median wall time of `f` in milliseconds.
fn time_ms(mut f: impl FnMut() -> candle_core::Result<Tensor>) -> f64 {
    f().unwrap(); // warm-up
    let mut t: Vec<f64> = (0..7)
        .map(|_| {
            let s = Instant::now();
            f().unwrap();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    // SmolLM2-135M's q/o (576×576) and gate/up (1536×576); Gemma 3 270M's down_proj (640×2048), the one shape of
    // these whose input fits K-quant blocks (256).
    let only = std::env::var("KIT_BENCH_ONLY").unwrap_or_default();
    let only_head = only == "lm_head" || only == "bf16";
    for (out, inp) in [(576, 576), (1536, 576), (640, 2048)] {
        if only_head {
            break;
        }
        let w = Tensor::randn(0f32, 0.05, (out, inp), &dev)?;
        println!("\nW {out}×{inp} (ms, median of 7)");
        println!(
            "| type | rows | candle's quantized kernel | kit's kernel (Q8_0, Q4_1) | kit's tiled kernel | dequantize + GEMM | GEMM on a dense copy | backward g·deq(W) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for dt in [
            GgmlDType::Q4K,
            GgmlDType::Q6K,
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
        ] {
            if inp % dt.block_size() != 0 {
                continue;
            }
            let q = Arc::new(QTensor::quantize(&w, dt)?);
            let mm = QMatMul::from_arc(q.clone())?;
            let frozen = FrozenWeight::Quantized(q.clone());
            let dense = q.dequantize(&dev)?;
            // Where the tiled kernel runs this type on this CPU (Q8_0 tiles need AVX-512 VNNI).
            let probe = Tensor::zeros((1, inp), candle_core::DType::F32, &dev)?;
            let tiled = match dt {
                GgmlDType::Q8_0 | GgmlDType::Q4_1 if kit::qgemv::tiled::applies(&probe, &q) => {
                    Some(kit::qgemv::tiled::TiledWeight::new(&q)?)
                }
                _ => None,
            };
            for rows in [1, 8, 32, 64, 256, 1024] {
                let x = Tensor::randn(0f32, 1.0, (rows, inp), &dev)?;
                let g = Tensor::randn(0f32, 1.0, (rows, out), &dev)?;
                let kernel = time_ms(|| mm.forward(&x));
                let ours = match dt {
                    GgmlDType::Q8_0 | GgmlDType::Q4_1 => {
                        format!(
                            "{:.3}",
                            time_ms(|| kit::qgemv::matmul_t(&x, &q).map_err(candle_core::Error::wrap))
                        )
                    }
                    _ => "—".to_string(),
                };
                let tiled_ms = match &tiled {
                    Some(t) => format!("{:.3}", time_ms(|| t.matmul_t(&x).map_err(candle_core::Error::wrap))),
                    None => "—".to_string(),
                };
                let deq = time_ms(|| matmul_t(&x, &q.dequantize(&dev)?).map_err(candle_core::Error::wrap));
                let gemm = time_ms(|| x.matmul(&dense.t()?));
                let bwd = time_ms(|| {
                    matmul(
                        &g,
                        &dense_weight(&frozen, candle_core::DType::F32).map_err(candle_core::Error::wrap)?,
                    )
                    .map_err(candle_core::Error::wrap)
                });
                println!("| {dt:?} | {rows} | {kernel:.3} | {ours} | {tiled_ms} | {deq:.3} | {gemm:.3} | {bwd:.3} |");
            }
        }
    }
    // The LM head at decode: vocabulary × hidden, read once per step. Which of the Q8_0 weight (candle's kernel) or
    // its dense f32 copy (`Linear::dense_copy`) is faster, by the number of rows decoded together.
    for (vocab, hidden) in [(49_152, 576), (262_144, 640)] {
        if only == "bf16" {
            break;
        }
        let w = Tensor::randn(0f32, 0.05, (vocab, hidden), &dev)?;
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0)?);
        let mm = QMatMul::from_arc(q.clone())?;
        let dense = q.dequantize(&dev)?;
        println!("\nLM head {vocab}×{hidden}, Q8_0 (ms, median of 7)");
        println!(
            "| rows | candle's quantized kernel | kit's Q8_0 kernel (`qgemv`) | kit's tiled kernel | dense f32 copy |"
        );
        println!("|---|---|---|---|---|");
        let probe = Tensor::zeros((1, hidden), candle_core::DType::F32, &dev)?;
        let tiled = kit::qgemv::tiled::TiledWeight::new(&q)
            .ok()
            .filter(|_| kit::qgemv::tiled::applies(&probe, &q));
        for rows in [1, 2, 4, 8, 16] {
            let x = Tensor::randn(0f32, 1.0, (rows, hidden), &dev)?;
            let kernel = time_ms(|| mm.forward(&x));
            let ours = time_ms(|| kit::qgemv::matmul_t(&x, &q).map_err(candle_core::Error::wrap));
            let tiled_ms = match &tiled {
                Some(t) => format!("{:.3}", time_ms(|| t.matmul_t(&x).map_err(candle_core::Error::wrap))),
                None => "—".to_string(),
            };
            let gemm = time_ms(|| matmul_t(&x, &dense).map_err(candle_core::Error::wrap));
            println!("| {rows} | {kernel:.3} | {ours:.3} | {tiled_ms} | {gemm:.3} |");
        }
    }
    // Training products (`TrainingArguments::bf16`): 1024 rows (4 × 256 tokens) through SmolLM2's and Gemma 3's
    // projection shapes, forward x·Wᵀ and backward g·W, f32 GEMM vs bf16 (`kit::bf16_gemm`).
    println!(
        "\nTraining products, 1024 rows (ms, median of 7; GFLOP/s); bf16 kernel: {}",
        kit::bf16_gemm::kernel_available()
    );
    println!("| W | f32 x·Wᵀ | bf16 x·Wᵀ | f32 g·W | bf16 g·W | bf16 / f32 | packing W once |");
    println!("|---|---|---|---|---|---|---|");
    let rows = 1024;
    for (out, inp) in [(576, 576), (192, 576), (1536, 576), (576, 1536), (640, 2048)] {
        let w = Tensor::randn(0f32, 0.05, (out, inp), &dev)?;
        let pack_start = Instant::now();
        let bf = kit::bf16_gemm::Bf16Weight::new(&w)?;
        let pack_ms = pack_start.elapsed().as_secs_f64() * 1e3;
        let x = Tensor::randn(0f32, 1.0, (rows, inp), &dev)?;
        let g = Tensor::randn(0f32, 1.0, (rows, out), &dev)?;
        let f32_fwd = time_ms(|| matmul_t(&x, &w).map_err(candle_core::Error::wrap));
        let bf_fwd = time_ms(|| bf.matmul_t(&x).map_err(candle_core::Error::wrap));
        let f32_bwd = time_ms(|| matmul(&g, &w).map_err(candle_core::Error::wrap));
        let bf_bwd = time_ms(|| bf.matmul(&g).map_err(candle_core::Error::wrap));
        let gflops = |ms: f64| 2.0 * (rows * out * inp) as f64 / ms / 1e6;
        println!(
            "| {out}×{inp} | {f32_fwd:.2} ({:.0}) | {bf_fwd:.2} ({:.0}) | {f32_bwd:.2} ({:.0}) | {bf_bwd:.2} ({:.0}) | {:.2}× | {pack_ms:.2} |",
            gflops(f32_fwd),
            gflops(bf_fwd),
            gflops(f32_bwd),
            gflops(bf_bwd),
            (bf_fwd + bf_bwd) / (f32_fwd + f32_bwd)
        );
    }
    Ok(())
}

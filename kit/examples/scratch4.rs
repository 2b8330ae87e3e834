use candle_core::{
    quantized::{GgmlDType, QMatMul, QTensor},
    DType, Device, Module, Tensor,
};
fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    for (out, inp) in [(576usize, 576usize), (1536, 576), (576, 1536)] {
        let w = Tensor::randn(0f32, 1.0, (out, inp), &dev)?;
        for dt in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q4_0] {
            if inp % dt.block_size() != 0 {
                continue;
            }
            let q = std::sync::Arc::new(QTensor::quantize(&w, dt)?);
            for rows in [1usize, 8, 64, 1024] {
                let x = Tensor::randn(0f32, 1.0, (rows, inp), &dev)?;
                let mm = QMatMul::from_arc(q.clone())?;
                let _ = mm.forward(&x)?;
                let t0 = std::time::Instant::now();
                for _ in 0..5 {
                    let _ = mm.forward(&x)?;
                }
                let tq = t0.elapsed().as_secs_f64() / 5.0;
                let t0 = std::time::Instant::now();
                for _ in 0..5 {
                    let wd = q.dequantize(&dev)?;
                    let _ = x.matmul(&wd.t()?)?;
                }
                let td = t0.elapsed().as_secs_f64() / 5.0;
                println!(
                    "{out}x{inp} {dt:?} rows {rows}: qmatmul {:.2} ms, dequant+matmul {:.2} ms",
                    tq * 1e3,
                    td * 1e3
                );
            }
        }
    }
    let _ = DType::F32;
    Ok(())
}

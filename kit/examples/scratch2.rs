use candle_core::{Device, Tensor};
use kit::prelude::*;
fn main() -> anyhow::Result<()> {
    let m = Model::load(
        "smollm2-135m",
        &LoadOptions {
            dequantize: std::env::var("DQ").is_ok(),
            ..Default::default()
        },
    )?;
    let ids: Vec<u32> = (0..32).map(|i| 100 + i).collect();
    for _ in 0..3 {
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        let t0 = std::time::Instant::now();
        let _ = m.decoder.forward(&x, None, None)?;
        println!("fwd32 {:?}", t0.elapsed());
        let x = Tensor::new(&ids[..1], &Device::Cpu)?.unsqueeze(0)?;
        let t0 = std::time::Instant::now();
        let _ = m.decoder.forward(&x, None, None)?;
        println!("fwd1 {:?}", t0.elapsed());
    }
    Ok(())
}

use candle_core::{DType, Device, Tensor};
use kit::model::{Decoder, ModelConfig, WeightSource};
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let ids: Vec<u32> = args[2].split(',').map(|s| s.parse().unwrap()).collect();
    let mut src = WeightSource::gguf(path)?;
    let cfg = match &src {
        WeightSource::Gguf { content, .. } => ModelConfig::from_gguf(content, path)?,
        _ => unreachable!(),
    };
    println!("{cfg:?}");
    let t0 = std::time::Instant::now();
    let dec = Decoder::load(&cfg, &mut src, &Device::Cpu, DType::F32)?;
    println!("load {:?}", t0.elapsed());
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let t0 = std::time::Instant::now();
    let logits = dec.forward(&x, None, None)?.squeeze(0)?;
    println!("fwd {:?}", t0.elapsed());
    for (i, row) in logits.to_vec2::<f32>()?.iter().enumerate() {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        idx.sort_by(|a, b| row[*b].partial_cmp(&row[*a]).unwrap());
        println!("{i}: {:?}", idx[..5].iter().map(|&j| (j, row[j])).collect::<Vec<_>>());
    }
    Ok(())
}

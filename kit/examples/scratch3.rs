use candle_core::{DType, Device};
use kit::model::{Decoder, ModelConfig, WeightSource};
fn main() -> anyhow::Result<()> {
    let dir = std::path::Path::new("/tmp/g3");
    let cfg = ModelConfig::from_config_json(&dir.join("config.json"))?;
    println!(
        "{:?} {:?} {} {:?}",
        cfg.layer_kinds, cfg.sliding_window, cfg.rope_theta, cfg.rope_local_base_freq
    );
    let mut src = WeightSource::safetensors_dir(dir)?;
    let d = Decoder::load(&cfg, &mut src, &Device::Cpu, DType::F32)?;
    let t = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu)?;
    let got = d.forward(&t["plain.input_ids"].to_dtype(DType::U32)?, None, None)?;
    let diff = (got - &t["plain.logits"])?.abs()?.max_keepdim(2)?.squeeze(2)?;
    println!("{}", diff);
    Ok(())
}

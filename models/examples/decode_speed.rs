//! Decode speed of a model folder: prefill a prompt, then time single-token steps with the KV
//! cache, and the LM head alone. `cargo run --release -p models --example decode_speed -- DIR`

use std::time::Instant;

use engine::no_grad;
use models::{Config, Model, Weights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: decode_speed DIR")?);
    let dev = engine::Device::new()?;
    let config = Config::from_file(&dir.join("config.json"))?;
    let model = Model::new(&config, &Weights::from_dir(&dev, &dir)?, false)?;
    no_grad(|| -> Result<(), Box<dyn std::error::Error>> {
        let prompt: Vec<u32> = (0..32).map(|i| 100 + i).collect();
        let mut caches = model.new_caches(1, 128)?;
        let t = Instant::now();
        let h = model.hidden_states_cached(&prompt, 1, &mut caches)?;
        h.to_vec()?;
        println!("prefill 32 tokens: {:.3}s", t.elapsed().as_secs_f64());
        for step in 0..6 {
            let t = Instant::now();
            let h = model.hidden_states_cached(&[200 + step], 1, &mut caches)?;
            h.to_vec()?;
            let body = t.elapsed().as_secs_f64();
            let t = Instant::now();
            model.logits(&h)?.to_vec()?;
            println!(
                "step {step}: layers {body:.3}s, lm head {:.3}s",
                t.elapsed().as_secs_f64()
            );
        }
        Ok(())
    })
}

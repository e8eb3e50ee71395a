//! The `trainer` command. Training, `diagnose` and `eval` arrive with the trainer issue;
//! today it reports the GPU adapter the engine would use.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Fine-tune LLaMA/Qwen2 checkpoints with the f_alpha SFT objectives, on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the adapter the engine picks (WGPU_BACKEND and TRAINER_ADAPTER choose), its
    /// features and limits.
    Devices,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Devices => devices(),
    }
}

fn devices() -> Result<()> {
    let dev = engine::Device::new()?;
    let f = dev.features();
    let l = dev.limits();
    println!(
        "adapter:            {} ({:?}, {:?})",
        dev.name(),
        dev.backend(),
        dev.device_type()
    );
    println!("f16:                {}", f.f16);
    println!("subgroups:          {}", f.subgroups);
    println!("cooperative matrix: {}", f.cooperative_matrix);
    println!("timestamps:         {}", f.timestamps);
    println!("max binding:        {} MiB", dev.max_binding_bytes() >> 20);
    println!("max buffer:         {} MiB", l.max_buffer_size >> 20);
    println!(
        "workgroup storage:  {} KiB",
        l.max_compute_workgroup_storage_size >> 10
    );
    Ok(())
}

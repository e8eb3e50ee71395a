//! The `trainer` command. `diagnose` places a dataset on the model-capability continuum;
//! `devices` shows the adapter. Training (`trainer --model M --alpha A --data D`) and `eval`
//! arrive with the trainer issue.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use trainer::data::{self, DataOptions, Fields, Shape};
use trainer::diagnose::{token_probs, Diagnosis};

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
    /// Mean probability the base model gives the training tokens (where the data sits on the
    /// paper's model-capability continuum), the objectives' values, and which alpha to use.
    Diagnose(Box<DiagnoseArgs>),
    /// Show the adapter the engine picks (WGPU_BACKEND and TRAINER_ADAPTER choose), its
    /// features and limits.
    Devices,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShapeArg {
    Auto,
    PromptResponse,
    Messages,
    Text,
}

/// How the data file is read (shared by training, diagnose and eval).
#[derive(Args)]
struct DataArgs {
    /// JSONL file: {"prompt", "response"}, {"messages": [...]} or {"text"} records.
    #[arg(long)]
    data: PathBuf,
    /// Record shape; auto decides per record from its fields.
    #[arg(long, value_enum, default_value = "auto")]
    shape: ShapeArg,
    /// Field holding the prompt.
    #[arg(long, default_value = "prompt")]
    prompt_field: String,
    /// Field holding the response.
    #[arg(long, default_value = "response")]
    response_field: String,
    /// Field holding the chat messages.
    #[arg(long, default_value = "messages")]
    messages_field: String,
    /// Field holding plain text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Longest sequence in tokens; longer ones are cut (and counted).
    #[arg(long, default_value_t = 2048)]
    max_length: usize,
}

impl DataArgs {
    fn options(&self) -> DataOptions {
        DataOptions {
            shape: match self.shape {
                ShapeArg::Auto => Shape::Auto,
                ShapeArg::PromptResponse => Shape::PromptResponse,
                ShapeArg::Messages => Shape::Messages,
                ShapeArg::Text => Shape::Text,
            },
            fields: Fields {
                prompt: self.prompt_field.clone(),
                response: self.response_field.clone(),
                messages: self.messages_field.clone(),
                text: self.text_field.clone(),
            },
            max_length: self.max_length,
        }
    }
}

#[derive(Args)]
struct DiagnoseArgs {
    /// Model folder, alias (qwen2.5-1.5b, llama-3.2-1b, smollm2-135m, ...) or HF repo id.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    data: DataArgs,
    /// Objectives to evaluate, as alpha values (0 = NLL, 1 = the paper's -p).
    #[arg(long, value_delimiter = ',', default_value = "0,1,10")]
    alphas: Vec<String>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Write an SVG histogram of p to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Tokens per forward pass (padded batch size x length).
    #[arg(long, default_value_t = 8192)]
    batch_tokens: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices => devices(),
        Command::Diagnose(args) => diagnose(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_model(name: &str) -> Result<(PathBuf, models::Model, models::Tokenizer)> {
    let dir = trainer::resolve::resolve(name).map_err(|e| anyhow!(e))?;
    let dev = engine::Device::new()?;
    let config = models::Config::from_file(&dir.join("config.json"))?;
    let tok = models::Tokenizer::from_dir(&dir)?;
    let weights = models::Weights::from_dir(&dev, &dir)?;
    let model = models::Model::new(&config, &weights, false)
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok((dir, model, tok))
}

fn diagnose(args: &DiagnoseArgs) -> Result<()> {
    // Check the cheap arguments before loading anything.
    Diagnosis::new(&[vec![0.5]], &args.alphas).map_err(|e| anyhow!(e))?;
    if args.batch_tokens == 0 || args.data.max_length < 2 {
        return Err(anyhow!(
            "--batch-tokens must be positive and --max-length at least 2"
        ));
    }
    let (_, model, tok) = load_model(&args.model)?;
    let ds = data::load(&args.data.data, &tok, &args.data.options())?;
    let pad = tok.eos_token_id().unwrap_or(0);
    let probs = token_probs(&model, &ds, args.batch_tokens, pad)?;
    let d = Diagnosis::new(&probs, &args.alphas).map_err(|e| anyhow!(e))?;
    if let Some(path) = &args.plot {
        std::fs::write(path, d.histogram_svg())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let mut j = d.to_json();
        j["examples"] = ds.examples.len().into();
        j["truncated"] = ds.truncated.into();
        j["dropped"] = ds.dropped.into();
        println!("{j}");
    } else {
        println!(
            "{}: {} examples ({} truncated, {} dropped)",
            ds.path.display(),
            ds.examples.len(),
            ds.truncated,
            ds.dropped
        );
        print!("{}", d.render());
    }
    Ok(())
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

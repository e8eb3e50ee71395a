//! The `trainer` command: `trainer --model M --alpha A --data D` fine-tunes; `diagnose` places a
//! dataset on the model-capability continuum; `devices` shows the adapter.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use trainer::data::{self, DataOptions, Fields, Shape};
use trainer::diagnose::{recommend, token_probs, Diagnosis};
use trainer::eval::EvalOptions;
use trainer::progress::Progress;
use trainer::schedule::AlphaSchedule;
use trainer::train::{train, TrainOptions};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Fine-tune LLaMA/Qwen2 checkpoints with the f_alpha SFT objectives, on any GPU through wgpu"
)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: Box<TrainArgs>,
}

/// Fine-tuning (the command without a subcommand).
#[derive(Args)]
struct TrainArgs {
    /// Model folder, alias (qwen2.5-1.5b, llama-3.2-1b, smollm2-135m, ...) or HF repo id.
    #[arg(long, required = true)]
    model: Option<String>,
    #[command(flatten)]
    data: Option<DataArgs>,
    /// Objective: f_alpha(p) = (1 - p^alpha)/alpha; 0 is NLL, 1 the paper's -p, 10 its -p^10;
    /// `auto` runs the diagnostic first and picks from where the data sits.
    #[arg(long, default_value = "0")]
    alpha: String,
    /// Move alpha linearly from FROM at the first step to TO at the last (overrides --alpha).
    #[arg(long, value_name = "FROM:TO")]
    alpha_schedule: Option<String>,
    /// Optimizer steps (overrides --epochs).
    #[arg(long)]
    steps: Option<usize>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    /// Fraction of the steps spent warming up (then cosine decay to --min-lr-ratio).
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    /// What the cosine decays to at the last step, as a fraction of --lr (verl's
    /// min_lr_ratio); 1 keeps the rate constant after warmup.
    #[arg(long, default_value_t = 0.0)]
    min_lr_ratio: f64,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// AdamW beta1.
    #[arg(long, default_value_t = 0.9)]
    beta1: f32,
    /// AdamW beta2.
    #[arg(long, default_value_t = 0.95)]
    beta2: f32,
    /// Clip gradients to this global norm (0 turns clipping off).
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Sequences per optimizer step (the global batch; micro-batches accumulate to it).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Padded tokens per forward pass (micro-batch size; with --packing, the length of its
    /// one row). A step's loss is the token mean of each micro-batch, averaged over its
    /// micro-batches (verl's reduction).
    #[arg(long, default_value_t = 4096)]
    batch_tokens: usize,
    /// At most this many sequences per forward pass as well (verl's
    /// micro_batch_size_per_gpu: with a --batch-tokens that never binds, micro-batches and so
    /// the loss's weighting are exactly verl's).
    #[arg(long, value_name = "N")]
    micro_batch_size: Option<usize>,
    /// Cut each step's sequences into micro-batches longest first, so that sequences of
    /// like lengths share one and little is padding. The step's sequences stay the same;
    /// its loss then averages those micro-batches (verl cuts the shuffled order as it is).
    #[arg(long)]
    group_by_length: bool,
    /// Pack each micro-batch's sequences one after another into one row of up to
    /// --batch-tokens tokens instead of a padded row each (verl's use_remove_padding): no
    /// padding between them, each sequence sees only itself and starts at position 0, so its
    /// loss and gradient are what it gets alone. Attention runs on the flash kernels (over
    /// --attention). More sequences then share a micro-batch, which the step's mean of
    /// micro-batch means weighs accordingly.
    #[arg(long)]
    packing: bool,
    /// Where metrics.jsonl, the plot training.svg and the checkpoints (final/ at the end) go.
    #[arg(long, default_value = "output")]
    output: PathBuf,
    /// Seed of the data order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write a checkpoint (HF folder + optimizer state) to OUTPUT/checkpoint-STEP every N steps.
    #[arg(long)]
    save_every: Option<usize>,
    /// Keep only the newest N of those checkpoints: older checkpoint-STEP folders are deleted
    /// as new ones are written (final/ is always kept).
    #[arg(long, value_name = "N")]
    save_total_limit: Option<usize>,
    /// Continue from a checkpoint folder: weights, optimizer state, schedule position and data
    /// order (run with the same --steps/--epochs, --seed and --batch-size).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Hold out this fraction of the examples (chosen by --seed) and report their NLL and
    /// mean p at the end (a last line in metrics.jsonl).
    #[arg(long, default_value_t = 0.0)]
    eval_fraction: f64,
    /// Held-out examples from a file of their own (JSONL or Parquet, read like --data),
    /// reported as --eval-fraction's are (instead of it).
    #[arg(long, value_name = "FILE")]
    eval_data: Option<PathBuf>,
    /// Also report the held-out examples' NLL and mean p every N steps (a metrics.jsonl line
    /// with `eval_nll` after that step's).
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// A step whose loss or gradient norm is NaN or infinite is skipped (weights and
    /// optimizer state untouched); this many in a row stop the run, after saving the state
    /// of the last good step as OUTPUT/checkpoint-STEP, with a non-zero exit.
    #[arg(long, default_value_t = trainer::guard::DEFAULT_MAX_BAD_STEPS)]
    max_bad_steps: usize,
    /// Precision of the linear layers' products (weights and optimizer state stay f32): auto
    /// is f16 where a GPU has cooperative matrices (tensor cores), else f32. f16 uses
    /// dynamic loss scaling.
    #[arg(long, value_enum, default_value = "auto")]
    precision: PrecisionArg,
    /// Recompute each decoder layer in the backward pass instead of keeping its activations
    /// (activation checkpointing: less memory for one more forward pass of compute); with
    /// f16, the layers' f16 weight copies are then made at each use instead of kept.
    #[arg(long)]
    recompute: bool,
    /// Keep AdamW's moments in host memory: 8 bytes a parameter off the GPU (a 7B model's
    /// 57 GiB), for 16 bytes a parameter carried to the GPU and back at each step. The
    /// updates are the same.
    #[arg(long)]
    offload_optimizer: bool,
    /// With f16, how attention is computed: auto = f16 matmul blocks on cooperative matrices
    /// (tensor cores) where they apply, else the f32 flash kernels; flash or blocks to choose.
    #[arg(long, value_enum, default_value = "auto")]
    attention: AttentionArg,
    /// With f16: the loss scale to start from (halved after a step whose gradients
    /// overflow, which is then skipped; doubled after 2000 good steps).
    #[arg(long, default_value_t = 65536.0)]
    loss_scale: f32,
    /// Time every GPU kernel of step N (timestamp queries; the step runs a little slower) and
    /// write the longest first to OUTPUT/profile.txt and OUTPUT/profile.json.
    #[arg(long, value_name = "N")]
    profile_step: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AttentionArg {
    Auto,
    Flash,
    Blocks,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Auto,
    F32,
    F16,
}

impl PrecisionArg {
    /// auto: f16 where a GPU has cooperative matrices (tensor cores), else f32.
    fn resolve(self, dev: &engine::Device) -> models::Precision {
        match self {
            PrecisionArg::F32 => models::Precision::F32,
            PrecisionArg::F16 => models::Precision::F16,
            PrecisionArg::Auto if dev.prefers_f16() => models::Precision::F16,
            PrecisionArg::Auto => models::Precision::F32,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Mean probability the base model gives the training tokens (where the data sits on the
    /// paper's model-capability continuum), the objectives' values, and which alpha to use.
    Diagnose(Box<DiagnoseArgs>),
    /// Accuracy on a test file: greedy generation with the KV cache on each prompt, the final
    /// answer extracted (\boxed{...}, "The answer is ...", else the last number, else a
    /// one-line output as it is) and compared with the reference after normalising; writes a
    /// JSON report.
    Eval(Box<EvalArgs>),
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
    /// JSONL or Parquet (.parquet) file: {"prompt", "response"}, {"messages": [...]} or
    /// {"text"} records. Training and diagnose take several (the shards of one dataset:
    /// `--data train-*.parquet`), read in the order given; eval takes one.
    #[arg(long, required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Record shape; auto decides per record from its fields.
    #[arg(long, value_enum, default_value = "auto")]
    shape: ShapeArg,
    /// Field holding the prompt: a string (one user turn) or a list of chat messages. Every
    /// field option takes a path into nested records too: `extra_info.question` (verl's
    /// prompt_dict_keys), `prompt.0.content`.
    #[arg(long, visible_alias = "prompt-key", default_value = "prompt")]
    prompt_field: String,
    /// Field holding the response.
    #[arg(long, visible_alias = "response-key", default_value = "response")]
    response_field: String,
    /// Field holding the chat messages.
    #[arg(long, visible_alias = "messages-key", default_value = "messages")]
    messages_field: String,
    /// Field holding plain text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Field holding the tools list a chat's template is given (a list, or a JSON string).
    #[arg(long, visible_alias = "tools-key", default_value = "tools")]
    tools_field: String,
    /// Longest sequence in tokens; longer ones are cut (and counted).
    #[arg(long, default_value_t = 2048)]
    max_length: usize,
    /// A record longer than --max-length: `right` cuts it at the end, `left` keeps its last
    /// --max-length tokens (the later turns of a long chat; both count it), `error` stops
    /// with its line or row (verl's three).
    #[arg(long, value_enum, default_value = "right")]
    truncation: TruncationArg,
    /// A Jinja chat template (a file) to render the records with instead of the model's (a
    /// base model without one, say); training saves it into its checkpoints as
    /// chat_template.jinja, so that eval and transformers render as training did.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TruncationArg {
    Right,
    Left,
    Error,
}

fn parse_alpha_schedule(text: &str) -> Result<AlphaSchedule> {
    let bad =
        || anyhow!("--alpha-schedule {text:?}: expected FROM:TO with two numbers >= 0, e.g. 0:1");
    let (a, b) = text.split_once(':').ok_or_else(bad)?;
    let (from, to): (f32, f32) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if !(from.is_finite() && to.is_finite() && from >= 0.0 && to >= 0.0) {
        return Err(bad());
    }
    Ok(AlphaSchedule { from, to })
}

impl DataArgs {
    /// `--chat-template`'s file and what it holds.
    fn chat_template_source(&self) -> Result<Option<(&Path, String)>> {
        let Some(path) = &self.chat_template else {
            return Ok(None);
        };
        let source =
            std::fs::read_to_string(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(Some((path, source)))
    }

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
                tools: self.tools_field.clone(),
            },
            max_length: self.max_length,
            truncation: match self.truncation {
                TruncationArg::Right => data::Truncation::Right,
                TruncationArg::Left => data::Truncation::Left,
                TruncationArg::Error => data::Truncation::Error,
            },
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
    /// Tokens per forward pass (padded batch size x length; with --packing, the length of
    /// its one row).
    #[arg(long, default_value_t = 8192)]
    batch_tokens: usize,
    /// Pack the sequences of a forward pass into one row (see `trainer --help`); the
    /// probabilities are the same.
    #[arg(long)]
    packing: bool,
    /// Precision of the products (auto: f16 where a GPU has cooperative matrices, with
    /// f32 accumulation; else f32).
    #[arg(long, value_enum, default_value = "auto")]
    precision: PrecisionArg,
}

#[derive(Args)]
struct EvalArgs {
    /// Model folder, alias (qwen2.5-1.5b, llama-3.2-1b, smollm2-135m, ...) or HF repo id.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    data: DataArgs,
    /// Field holding the reference answer (`reward_model.ground_truth` in verl's RL files);
    /// where a record lacks it, the answer is extracted from its response (or last assistant
    /// turn).
    #[arg(long, default_value = "answer")]
    answer_field: String,
    /// Most tokens generated per prompt.
    #[arg(long, default_value_t = 512)]
    max_new_tokens: usize,
    /// Evaluate only the first N records.
    #[arg(long)]
    limit: Option<usize>,
    /// Prompts generated for together (grouped by length, left-padded; the outputs are those
    /// of one at a time).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Where the JSON report (accuracy and every item's output) goes.
    #[arg(long, default_value = "eval.json")]
    report: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Devices) => devices(),
        Some(Command::Diagnose(args)) => diagnose(&args),
        Some(Command::Eval(args)) => eval(&args),
        None => run_training(&cli.train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", trainer::guard::describe(&e));
            if e.downcast_ref::<trainer::guard::Interrupted>().is_some() {
                ExitCode::from(130) // the shell's code for a process stopped by Ctrl-C
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn load_model(name: &str, data: &DataArgs) -> Result<(PathBuf, models::Model, models::Tokenizer)> {
    load_model_for(name, data, false)
}

/// The model, its tokenizer (with `--chat-template`'s template, if given) and its folder.
fn load_model_for(
    name: &str,
    data: &DataArgs,
    trainable: bool,
) -> Result<(PathBuf, models::Model, models::Tokenizer)> {
    let template = data.chat_template_source()?;
    let dir = trainer::resolve::resolve(name).map_err(|e| anyhow!(e))?;
    let dev = engine::Device::new()?;
    let config = models::Config::from_file(&dir.join("config.json"))?;
    let mut tok = models::Tokenizer::from_dir(&dir)?;
    if let Some((path, source)) = template {
        tok.set_chat_template(source)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    let weights = models::Weights::from_dir(&dev, &dir)?;
    let model = models::Model::new(&config, &weights, trainable)
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
    let (_, model, tok) = load_model(&args.model, &args.data)?;
    let ds = data::load_files(&args.data.data, &tok, &args.data.options())?;
    let pad = tok.eos_token_id().unwrap_or(0);
    model.set_compute(models::Compute {
        precision: args.precision.resolve(model.device()),
        recompute: false,
        ..Default::default()
    });
    let probs = token_probs(&model, &ds, args.batch_tokens, args.packing, pad)?;
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
            ds.name(),
            ds.examples.len(),
            ds.truncated,
            ds.dropped
        );
        print!("{}", d.render());
    }
    Ok(())
}

fn run_training(args: &TrainArgs) -> Result<()> {
    let (model_name, data) = match (&args.model, &args.data) {
        (Some(m), Some(d)) => (m, d),
        _ => return Err(anyhow!("--model and --data are required (see --help)")),
    };
    let fixed_alpha = match (args.alpha.as_str(), &args.alpha_schedule) {
        (_, Some(s)) => Some(parse_alpha_schedule(s)?),
        ("auto", None) => None,
        (a, None) => {
            let alpha: f32 = a
                .parse()
                .map_err(|_| anyhow!("--alpha {a:?}: expected a number >= 0 or `auto`"))?;
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(anyhow!("--alpha {a}: expected a number >= 0 or `auto`"));
            }
            Some(AlphaSchedule {
                from: alpha,
                to: alpha,
            })
        }
    };
    if args.batch_size == 0
        || args.batch_tokens == 0
        || args.steps == Some(0)
        || args.epochs == 0
        || args.micro_batch_size == Some(0)
    {
        return Err(anyhow!(
            "--batch-size, --batch-tokens, --micro-batch-size, --steps and --epochs must be \
             positive"
        ));
    }
    if !(args.lr > 0.0 && args.lr.is_finite() && (0.0..1.0).contains(&args.warmup_ratio)) {
        return Err(anyhow!(
            "--lr must be positive and --warmup-ratio in [0, 1)"
        ));
    }
    if !(0.0..=1.0).contains(&args.min_lr_ratio) {
        return Err(anyhow!("--min-lr-ratio must be in [0, 1]"));
    }
    if !(0.0..1.0).contains(&args.eval_fraction) {
        return Err(anyhow!("--eval-fraction must be in [0, 1)"));
    }
    if !(args.loss_scale.is_finite() && args.loss_scale >= 1.0) {
        return Err(anyhow!("--loss-scale must be a number >= 1"));
    }
    if [args.save_every, args.eval_every, args.save_total_limit].contains(&Some(0))
        || args.max_bad_steps == 0
    {
        return Err(anyhow!(
            "--save-every, --save-total-limit, --max-bad-steps and --eval-every must be positive"
        ));
    }
    if args.eval_data.is_some() && args.eval_fraction > 0.0 {
        return Err(anyhow!(
            "--eval-data and --eval-fraction both choose the held-out examples: give one"
        ));
    }
    if args.eval_every.is_some() && args.eval_data.is_none() && args.eval_fraction == 0.0 {
        return Err(anyhow!(
            "--eval-every needs held-out examples: --eval-data FILE or --eval-fraction F"
        ));
    }
    // Resuming loads the checkpoint's weights (an HF folder like any other).
    let source = match &args.resume {
        Some(dir) => dir.to_string_lossy().into_owned(),
        None => model_name.clone(),
    };
    let (dir, model, tok) = load_model_for(&source, data, true)?;
    let ds = data::load_files(&data.data, &tok, &data.options())?;
    let eval_set = match &args.eval_data {
        Some(path) => Some(std::sync::Arc::new(data::load(
            path,
            &tok,
            &data.options(),
        )?)),
        None => None,
    };
    let pad = tok.eos_token_id().unwrap_or(0);
    let alpha = match fixed_alpha {
        Some(a) => a,
        None => {
            let probs: Vec<f64> = token_probs(&model, &ds, args.batch_tokens, args.packing, pad)?
                .into_iter()
                .flatten()
                .collect();
            let (alpha, reason) = recommend(trainer::diagnose::mean_p_and_nll(&probs).0);
            eprintln!("--alpha auto: alpha = {alpha} ({reason})");
            AlphaSchedule {
                from: alpha as f32,
                to: alpha as f32,
            }
        }
    };
    let opts = TrainOptions {
        alpha,
        steps: args.steps,
        epochs: args.epochs,
        lr: args.lr,
        warmup_ratio: args.warmup_ratio,
        min_lr_ratio: args.min_lr_ratio,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: 1e-8,
        weight_decay: args.weight_decay,
        clip: (args.clip > 0.0).then_some(args.clip),
        batch_size: args.batch_size,
        micro_batch_tokens: args.batch_tokens,
        micro_batch_sequences: args.micro_batch_size,
        group_by_length: args.group_by_length,
        packing: args.packing,
        seed: args.seed,
        output: args.output.clone(),
        save_every: args.save_every,
        save_total_limit: args.save_total_limit,
        resume: args.resume.clone(),
        eval_fraction: args.eval_fraction,
        eval_set,
        eval_every: args.eval_every,
        compute: models::Compute {
            precision: args.precision.resolve(model.device()),
            recompute: args.recompute,
            attention: match args.attention {
                AttentionArg::Auto => models::AttentionPath::Auto,
                AttentionArg::Flash => models::AttentionPath::Flash,
                AttentionArg::Blocks => models::AttentionPath::Blocks,
            },
        },
        initial_loss_scale: args.loss_scale,
        max_bad_steps: args.max_bad_steps,
        profile_step: args.profile_step,
        offload_optimizer: args.offload_optimizer,
        chat_template: data
            .chat_template
            .as_ref()
            .and(tok.chat_template())
            .map(str::to_string),
    };
    eprintln!(
        "{}: {} examples, {} loss tokens ({} truncated to --max-length {}, {} dropped); {} on {}: linear layers in {:?}{}",
        ds.name(),
        ds.examples.len(),
        ds.loss_tokens(),
        ds.truncated,
        data.max_length,
        ds.dropped,
        dir.display(),
        model.device().name(),
        opts.compute.precision,
        if opts.compute.recompute {
            ", layers recomputed in backward"
        } else {
            ""
        }
    );
    eprintln!("{}", trainer::train::state_summary(&model, &opts));
    // Ctrl-C or SIGTERM: finish the step in flight, save the state after it, exit 130; a
    // second one quits at once.
    let handler = ctrlc::set_handler(|| {
        if trainer::guard::stop_asked() {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step and saving its state (Ctrl-C again to quit at once)");
        trainer::guard::ask_to_stop();
    });
    if let Err(e) = handler {
        eprintln!("note: Ctrl-C will not save the state ({e})");
    }
    let started = std::time::Instant::now();
    let mut progress: Option<Progress> = None;
    let history = train(&model, &ds, pad, &opts, Some(&dir), |m, total| {
        let bar = progress.get_or_insert_with(|| Progress::new(total, "step"));
        bar.update(
            m.step,
            &format!(
                "loss {:.4}  mean p {:.3}  grad norm {:.3}  lr {:.2e}  alpha {}  {:.0} tok/s",
                m.loss, m.mean_p, m.grad_norm, m.lr, m.alpha, m.tokens_per_s
            ),
        );
    })?;
    if let Some(bar) = &progress {
        bar.finish();
    }
    let (first, last) = (
        history.first().map_or(0.0, |m| m.loss),
        history.last().map_or(0.0, |m| m.loss),
    );
    eprintln!(
        "done: {} steps in {:.1}s; loss {first:.4} -> {last:.4}; metrics in {}, plot in {}, checkpoint in {}",
        history.len(),
        started.elapsed().as_secs_f64(),
        args.output.join("metrics.jsonl").display(),
        args.output.join("training.svg").display(),
        args.output.join("final").display()
    );
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    if args.max_new_tokens == 0 || args.limit == Some(0) || args.batch_size == 0 {
        return Err(anyhow!(
            "--max-new-tokens, --limit and --batch-size must be positive"
        ));
    }
    let [data] = args.data.data.as_slice() else {
        return Err(anyhow!(
            "eval reads one test file; --data was given {}",
            args.data.data.len()
        ));
    };
    let opts = EvalOptions {
        fields: args.data.options().fields,
        answer_field: args.answer_field.clone(),
        max_length: args.data.max_length,
        max_new_tokens: args.max_new_tokens,
        limit: args.limit,
        batch_size: args.batch_size,
    };
    let (dir, model, tok) = load_model(&args.model, &args.data)?;
    let items = trainer::eval::load(data, &tok, &opts)?;
    let stops = trainer::eval::stop_tokens(&dir, &model, &tok);
    let progress = Progress::new(items.len(), "example");
    let mut report =
        trainer::eval::evaluate(&model, &tok, &items, &stops, &opts, |done, _, correct| {
            progress.update(
                done,
                &format!(
                    "accuracy {:.3} ({correct}/{done})",
                    correct as f64 / done as f64
                ),
            )
        })?;
    progress.finish();
    report.model = dir;
    report.data = data.clone();
    let json = serde_json::to_string_pretty(&report)?;
    write_atomically(&args.report, json.as_bytes())?;
    println!(
        "accuracy {:.4} ({}/{}) on {}; {} outputs with no answer; {} tokens in {:.1}s; report in {}",
        report.accuracy,
        report.correct,
        report.examples,
        data.display(),
        report.no_answer,
        report.tokens_generated,
        report.seconds,
        args.report.display()
    );
    Ok(())
}

/// Write a file through a temporary name in the same folder, so it is whole or absent.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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
    let offered = match dev.coop_offered() {
        [] => "none".to_string(),
        list => list.join(", "),
    };
    match dev.coop_fragment() {
        Some(frag) => {
            let s = frag.side();
            println!("cooperative matrix: {s}x{s}x{s} f16 -> f32 (offered: {offered})");
        }
        None => println!(
            "cooperative matrix: none used (offered: {offered}; the kernels take 16x16x16 or \
             8x8x8 f16 -> f32, on Vulkan with subgroups)"
        ),
    }
    println!(
        "--precision auto:   {}",
        if dev.prefers_f16() { "f16" } else { "f32" }
    );
    println!("timestamps:         {}", f.timestamps);
    println!("max binding:        {} MiB", dev.max_binding_bytes() >> 20);
    println!("max buffer:         {} MiB", l.max_buffer_size >> 20);
    println!(
        "workgroup storage:  {} KiB",
        l.max_compute_workgroup_storage_size >> 10
    );
    Ok(())
}

//! LLaMA and Qwen2 decoders from Hugging Face checkpoints (the models issue builds this crate).

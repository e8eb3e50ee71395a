#!/usr/bin/env python3
"""Record HF transformers' outputs (float32, CPU) that the Rust parity tests compare against.

tests/fixtures/hf/tiny-llama/, tiny-qwen2/: a tiny random-initialised model of each family
  (config.json, model.safetensors f32), and reference.safetensors holding the input ids,
  the logits, the loss (mean cross-entropy of next-token prediction) and the gradient of
  the loss for every parameter, under "grad.<HF name>".
tests/fixtures/hf/real_<model>.json: for the two real test models (scripts/fetch_models.py),
  per-token log-probabilities of fixed texts and 20-token greedy continuations of 3 prompts.

Needs torch, transformers, safetensors. Run from anywhere; writes into the repository.
"""
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "hf"
CACHE = Path(os.environ.get("TRAINER_CACHE", Path.home() / ".cache" / "trainer"))

TINY = {
    "tiny-llama": LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=64,
        tie_word_embeddings=False, initializer_range=0.1,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
    ),
    "tiny-qwen2": Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=64,
        tie_word_embeddings=True, initializer_range=0.1, rope_theta=10000.0,
    ),
}

TEXTS = [
    "The capital of France is Paris. The capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?",
]
PROMPTS = [
    "What is 7 times 8?",
    "Write a haiku about the sea.",
    "List three primary colors.",
]


def tiny(name, cfg):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    # Non-zero biases, so q/k/v biases are exercised (HF initialises them to zero).
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(".bias"):
                p.normal_(0.0, 0.1)
    d = OUT / name
    model.save_pretrained(d)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=g)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    ref = {"input_ids": ids.to(torch.int32), "logits": out.logits.detach().contiguous(),
           "loss": out.loss.detach().reshape(1)}
    for pname, p in model.named_parameters():
        ref[f"grad.{pname}"] = p.grad.detach().contiguous()
    save_file(ref, d / "reference.safetensors")
    print(d, "loss", out.loss.item())


@torch.no_grad()
def real(name):
    d = CACHE / "models" / name
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    texts = []
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        lp = [logp[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
        texts.append({"text": text, "ids": ids, "logprobs": lp})
    gens = []
    for prompt in PROMPTS:
        rendered = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        out = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, min_new_tokens=20)
        gens.append({"prompt": prompt, "ids": ids, "generated": out[0, len(ids):].tolist()})
    path = OUT / f"real_{name}.json"
    path.write_text(json.dumps({"model": name, "texts": texts, "generations": gens}, indent=1) + "\n")
    print(path)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, cfg in TINY.items():
        tiny(name, cfg)
    for name in ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]:
        real(name)


if __name__ == "__main__":
    main()

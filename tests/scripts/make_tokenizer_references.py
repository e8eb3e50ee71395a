#!/usr/bin/env python3
"""Record HF transformers' token ids and chat-template renderings for the two real test
models, as tests/fixtures/hf/tokenizer_<model>.json, for the Rust tokenizer tests.

Needs transformers and the model folders made by scripts/fetch_models.py (no torch).
"""
import json
import os
from pathlib import Path

from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TRAINER_CACHE", Path.home() / ".cache" / "trainer"))

TEXTS = [
    "Hello world",
    " leading space and  double  spaces\n\nnew lines\ttab",
    "Numbers: 3.14159, 1,000,000 and 2^10 = 1024; 12345678901234567890",
    "def f(x):\n    return x ** 2  # square\n",
    "Unicode: café naïve 日本語 中文字符 emoji 🤖🚀 Ünïcödé",
    "<|im_start|>user\nspecial tokens inline<|im_end|>",
    "Solve: If John has 3 apples and buys 5 more, how many? The answer is 8.",
    "",
    "   ",
    "a" * 300,
]

CHATS = [
    [{"role": "user", "content": "What is 2+3?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."}],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Add 17 and 25.\nShow steps."},
    ],
]


def main():
    for name in ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]:
        tok = AutoTokenizer.from_pretrained(str(CACHE / "models" / name))
        cases = []
        for text in TEXTS:
            for special in (True, False):
                ids = tok(text, add_special_tokens=special)["input_ids"]
                cases.append({"text": text, "add_special_tokens": special, "ids": ids})
        chats = []
        for messages in CHATS:
            for gen in (True, False):
                rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                ids = tok(rendered, add_special_tokens=False)["input_ids"]
                chats.append({"messages": messages, "add_generation_prompt": gen, "rendered": rendered, "ids": ids})
        out = ROOT / "tests" / "fixtures" / "hf" / f"tokenizer_{name}.json"
        out.write_text(json.dumps({"model": name, "texts": cases, "chats": chats}, ensure_ascii=False, indent=1) + "\n")
        print(out)


if __name__ == "__main__":
    main()

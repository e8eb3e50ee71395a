#!/usr/bin/env python3
"""Make the tokenizer fixtures of the two real test models, once, from their GGUF files.

transformers rebuilds a fast tokenizer from a GGUF file's vocabulary, merges and chat
template (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`); we save it and commit
tokenizer.json and tokenizer_config.json xz-compressed under tests/fixtures/tokenizers/<name>/,
so CI needs neither torch nor transformers to get a model's tokenizer.

Needs: transformers, tokenizers, gguf, torch (transformers' GGUF path imports it).
Run after scripts/fetch_models.py has cached the GGUF files.
"""
import lzma
import os
import sys
import tempfile
from pathlib import Path

from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TRAINER_CACHE", Path.home() / ".cache" / "trainer"))


def main():
    names = sys.argv[1:] or ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    for name in names:
        gguf = CACHE / "gguf" / f"{name}.gguf"
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        out = ROOT / "tests" / "fixtures" / "tokenizers" / name
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            tok.save_pretrained(tmp)
            for file in ["tokenizer.json", "tokenizer_config.json"]:
                data = (Path(tmp) / file).read_bytes()
                (out / f"{file}.xz").write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
            extra = Path(tmp) / "chat_template.jinja"
            if extra.exists():
                (out / "chat_template.jinja.xz").write_bytes(lzma.compress(extra.read_bytes()))
        print(out)


if __name__ == "__main__":
    main()

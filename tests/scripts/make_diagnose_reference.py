#!/usr/bin/env python3
"""Record, with HF transformers in float32, the capability diagnostic of a small SFT file for
both real test models: the probability the model gives each loss token, under verl's SFT
conventions implemented here independently of the Rust code (prompt as one user turn through
the chat template with the generation prompt, response + eos, tokenized without special
tokens; for messages, the assistant turns). Writes tests/fixtures/hf/diagnose_<model>.json.
"""
import json
import math
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TRAINER_CACHE", Path.home() / ".cache" / "trainer"))
DATA = ROOT / "tests" / "fixtures" / "data" / "tiny_sft.jsonl"


def example(tok, rec):
    if "messages" in rec:
        msgs = rec["messages"]
        full = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
        loss = [False] * len(full)
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            start = len(tok(tok.apply_chat_template(msgs[:i], tokenize=False, add_generation_prompt=True),
                            add_special_tokens=False)["input_ids"])
            end = len(tok(tok.apply_chat_template(msgs[: i + 1], tokenize=False), add_special_tokens=False)["input_ids"])
            for j in range(max(start, 1), end):
                loss[j] = True
        return full, loss
    prompt = tok.apply_chat_template([{"role": "user", "content": rec["prompt"]}], tokenize=False,
                                     add_generation_prompt=True)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(rec["response"] + tok.eos_token, add_special_tokens=False)["input_ids"]
    return p + r, [False] * len(p) + [True] * len(r)


@torch.no_grad()
def main():
    records = [json.loads(l) for l in DATA.read_text().splitlines() if l.strip()]
    for name in ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]:
        d = CACHE / "models" / name
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        probs, per_example = [], []
        for rec in records:
            ids, loss = example(tok, rec)
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
            ps = [math.exp(logp[t - 1, ids[t]].item()) for t in range(1, len(ids)) if loss[t]]
            probs += ps
            per_example.append(sum(ps) / len(ps))
        out = {"model": name, "tokens": len(probs), "mean_prob": sum(probs) / len(probs),
               "nll": -sum(math.log(p) for p in probs) / len(probs), "per_example_mean": per_example,
               "probs": probs}
        path = ROOT / "tests" / "fixtures" / "hf" / f"diagnose_{name}.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(path, out["tokens"], out["mean_prob"])


if __name__ == "__main__":
    main()

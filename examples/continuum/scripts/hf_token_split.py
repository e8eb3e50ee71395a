#!/usr/bin/env python3
"""Mean p of a continuum training file under HF transformers (float32, CPU), split into the
response's own tokens and the end-of-turn token that closes it, as RESULTS.md reports it.

Records are rendered as `trainer` renders the prompt/response shape (verl's): the prompt as one
user turn through the chat template with the generation prompt, then response + eos, each
tokenized without special tokens; p is the model's probability of each response token.

    ~/.cache/trainer/venv-hf/bin/python examples/continuum/scripts/hf_token_split.py \
        ~/.cache/trainer/models/qwen2.5-coder-0.5b-instruct runs/cont/figlet_train.jsonl
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@torch.no_grad()
def main(model_dir, *files):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    for path in files:
        body, end = [], []
        for line in open(path):
            if not line.strip():
                continue
            r = json.loads(line)
            text = tok.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                           tokenize=False, add_generation_prompt=True)
            a = tok(text, add_special_tokens=False)["input_ids"]
            b = tok(r["response"] + tok.eos_token, add_special_tokens=False)["input_ids"]
            logp = model(torch.tensor([a + b])).logits[0].float().log_softmax(-1)
            p = [logp[len(a) - 1 + i, t].exp().item() for i, t in enumerate(b)]
            body += p[:-1]
            end.append(p[-1])
        every = body + end
        print(json.dumps({
            "file": path, "tokens": len(every), "mean_p": sum(every) / len(every),
            "response_tokens": len(body), "response_mean_p": sum(body) / len(body),
            "end_of_turn_mean_p": sum(end) / len(end),
            "response_tokens_above_0.65": sum(x > 0.65 for x in body),
            "end_of_turn_above_0.65": sum(x > 0.65 for x in end),
        }))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], *sys.argv[2:])

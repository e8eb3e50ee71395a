#!/usr/bin/env python3
"""Print HF transformers' float32 logits of a model folder for given token ids, as JSON.

Usage: hf_logits.py MODEL_DIR IDS_JSON   (IDS_JSON: a list of lists of equal length)
Used by the Rust test that checks a checkpoint saved by us loads in transformers.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
    ids = torch.tensor(json.loads(sys.argv[2]))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    print(json.dumps({"shape": list(logits.shape), "logits": logits.flatten().tolist()}))


if __name__ == "__main__":
    main()

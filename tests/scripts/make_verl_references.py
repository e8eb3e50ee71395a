#!/usr/bin/env python3
"""Write a Parquet file in the shape verl's GSM8K preprocessing gives (examples/data_preprocess/
gsm8k.py: a `prompt` list of chat messages, `reward_model.ground_truth`, and `extra_info` with
the question and the worked answer) as tests/fixtures/data/verl_gsm8k.parquet, and record, for
the two real test models, what verl makes of it with HF transformers' tokenizer, as
tests/fixtures/hf/verl_<model>.json:

- `sft`: verl's SFTDataset with prompt_key=extra_info, prompt_dict_keys=[question],
  response_key=extra_info, response_dict_keys=[answer] (its GSM8K SFT example): the question
  as one user turn through the chat template with the generation prompt, then answer + eos,
  each tokenized without special tokens. verl's loss_mask marks the positions whose *next*
  token is a target; we record the targets themselves (`loss[i]` = loss_mask[i - 1]).
- `eval`: the RL prompt (the `prompt` messages through the chat template with the
  generation prompt) and its reference answer, reward_model.ground_truth.

Needs transformers and pyarrow, and the model folders made by scripts/fetch_models.py.
"""
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TRAINER_CACHE", Path.home() / ".cache" / "trainer"))
MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'

# (question, worked answer in GSM8K's form, final answer)
PROBLEMS = [
    (
        "A baker makes 48 rolls in the morning and half as many in the afternoon. How many "
        "rolls does she make in all?",
        "In the afternoon she makes 48/2 = <<48/2=24>>24 rolls.\n"
        "In all she makes 48 + 24 = <<48+24=72>>72 rolls.\n#### 72",
        "72",
    ),
    (
        "Tom reads 12 pages a day. How many days does he need for a 300-page book?",
        "He needs 300 / 12 = <<300/12=25>>25 days.\n#### 25",
        "25",
    ),
    (
        "Café prices: a crêpe costs $3.50 and a drink $1.25. What do 4 crêpes and 2 drinks "
        "cost?\n(Answer in dollars.)",
        "4 crêpes cost 4 * 3.50 = $<<4*3.50=14>>14.\n2 drinks cost 2 * 1.25 = "
        "$<<2*1.25=2.5>>2.50.\nTogether: 14 + 2.50 = $<<14+2.5=16.5>>16.50\n#### 16.5",
        "16.5",
    ),
    (
        "  A train leaves at 9:15 and arrives at 11:45. How long is the trip, in minutes?  ",
        "From 9:15 to 11:45 is 2 hours 30 minutes = 2 * 60 + 30 = <<2*60+30=150>>150 minutes.\n"
        "#### 150",
        "150",
    ),
]


def rows():
    out = []
    for i, (question, answer, final) in enumerate(PROBLEMS):
        out.append(
            {
                "data_source": "openai/gsm8k",
                "prompt": [{"role": "user", "content": question + " " + INSTRUCTION}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": final},
                "extra_info": {"split": "train", "index": i, "answer": answer, "question": question},
            }
        )
    return out


def verl_sft(tok, prompt, response):
    """verl's SFTDataset.__getitem__ without its padding (attention mask all ones)."""
    prompt_str = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tok(prompt_str, add_special_tokens=False)["input_ids"]
    response_ids = tok(response + tok.eos_token, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + response_ids
    loss_mask = [1] * len(ids)
    if len(prompt_ids) > 1:
        for i in range(len(prompt_ids) - 1):
            loss_mask[i] = 0
    loss_mask[len(ids) - 1] = 0
    return {"ids": ids, "loss": [False] + [bool(m) for m in loss_mask[:-1]]}


def main():
    data = rows()
    table = pa.Table.from_pylist(data)
    out = ROOT / "tests" / "fixtures" / "data" / "verl_gsm8k.parquet"
    pq.write_table(table, out)
    print("wrote", out)
    for name in MODELS:
        tok = AutoTokenizer.from_pretrained(str(CACHE / "models" / name))
        ref = {"sft": [], "eval": []}
        for r in data:
            ref["sft"].append(verl_sft(tok, r["extra_info"]["question"], r["extra_info"]["answer"]))
            ids = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
            ref["eval"].append(
                {
                    "ids": tok(ids, add_special_tokens=False)["input_ids"],
                    "reference": r["reward_model"]["ground_truth"],
                }
            )
        path = ROOT / "tests" / "fixtures" / "hf" / f"verl_{name}.json"
        path.write_text(json.dumps(ref) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Record, with HF transformers in float32, what `trainer eval` must produce on a small test
file: for each record, the prompt rendered as verl does (one user turn, or the turns before the
last assistant turn, through the chat template with the generation prompt, tokenized without
special tokens), HF's greedy `generate` output (stopping at the model's eos), its decoded text,
the answer extracted from it and whether it matches the reference. The answer rules are written
here independently of the Rust code: the last \\boxed{...}, else the rest of the line after the
last "the answer is" (closing period dropped), else the last number, else the whole output
when it is a single line (a bare answer); answers compared after normalising (LaTeX wrappers,
$, spaces, case, trailing periods, thousands commas), integers digit for digit, other numbers
within a relative 1e-6.
Writes tests/fixtures/hf/eval_<model>.json.
"""
import json
import os
import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TRAINER_CACHE", Path.home() / ".cache" / "trainer"))
DATA = ROOT / "tests" / "fixtures" / "data" / "tiny_eval.jsonl"
MAX_NEW_TOKENS = 16


def boxed(text):
    starts = [m.end() for m in re.finditer(r"\\(boxed|fbox)", text)]
    if not starts:
        return None
    rest = text[starts[-1]:].lstrip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, c in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth == 0:
            return rest[1:i]
    return None


# Whitespace as Rust's `char::is_whitespace` and `str::trim` see it (Unicode White_Space),
# which Python's `str.strip` and `\s` do not quite (they add \x1c-\x1f).
WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
     "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
WS_RE = "[" + re.escape(WS) + "]"


def extract(text):
    b = boxed(text)
    if b is not None:
        return b
    hits = list(re.finditer(r"the answer is", text, flags=re.IGNORECASE))
    if hits:
        line = text[hits[-1].end():].lstrip(": \t").split("\n")[0].strip(WS).rstrip(".")
        if line:
            return line
    nums = re.findall(r"-?[0-9]+(?:[.,][0-9]+)*", text)
    if nums:
        return nums[-1]
    bare = text.strip(WS)
    return bare if bare and "\n" not in bare else None


def normalize(s):
    s = s.strip(WS)
    b = boxed(s)
    if b is not None:
        s = b
    for a, z in [("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""),
                 ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^\\circ", ""), ("^{\\circ}", ""),
                 ("\\%", ""), ("%", ""), ("$", "")]:
        s = s.replace(a, z)
    s = re.sub(r"\\(text|textbf|mathrm|mbox)\{([^}]*)\}", r"\2", s)
    s = re.sub(WS_RE, "", s).rstrip(".").lower()
    if re.fullmatch(r"-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?", s):
        s = s.replace(",", "")
    return s


def integer(s):
    """A plain integer in canonical form ("-007" -> "-7", any zero -> "0"), else None."""
    if not re.fullmatch(r"-?[0-9]+", s):
        return None
    digits = s.lstrip("-").lstrip("0")
    return "0" if not digits else ("-" + digits if s.startswith("-") else digits)


def matches(pred, ref):
    p, r = normalize(pred), normalize(ref)
    if p == r:
        return True
    # Integers are equal digit for digit; a tolerance only where there is a fraction.
    if integer(p) is not None and integer(r) is not None:
        return integer(p) == integer(r)
    if "_" in p or "_" in r:  # Python's float() reads 1_000; Rust's parse does not
        return False
    try:
        a, b = float(p), float(r)
    except ValueError:
        return False
    if a != a or b != b or abs(a) == float("inf") or abs(b) == float("inf"):
        return False
    return abs(a - b) <= 1e-6 * max(abs(b), 1.0)


def question(rec):
    if "messages" in rec:
        msgs = list(rec["messages"])
        response = msgs.pop()["content"] if msgs[-1]["role"] == "assistant" else None
    else:
        msgs = [{"role": "user", "content": rec["prompt"]}]
        response = rec.get("response")
    ref = str(rec["answer"]) if "answer" in rec else extract(response)
    return msgs, ref


@torch.no_grad()
def main():
    records = [json.loads(l) for l in DATA.read_text().splitlines() if l.strip()]
    for name in ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]:
        d = CACHE / "models" / name
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        items = []
        for i, rec in enumerate(records):
            msgs, ref = question(rec)
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
            gen = out[0, len(ids):].tolist()
            output = tok.decode(gen, skip_special_tokens=True)
            pred = extract(output)
            items.append({"record": i + 1, "prompt_ids": ids, "generated": gen, "output": output,
                          "reference": ref, "predicted": pred,
                          "correct": pred is not None and matches(pred, ref)})
        correct = sum(it["correct"] for it in items)
        out = {"model": name, "max_new_tokens": MAX_NEW_TOKENS, "examples": len(items),
               "correct": correct, "accuracy": correct / len(items), "items": items}
        path = ROOT / "tests" / "fixtures" / "hf" / f"eval_{name}.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(path, out["accuracy"], [it["output"] for it in items])


if __name__ == "__main__":
    main()

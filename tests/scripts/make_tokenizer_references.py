#!/usr/bin/env python3
"""Record HF transformers' token ids and chat-template renderings (plain chats, and chats with
tool calls and a tools list) for the two real test models, as
tests/fixtures/hf/tokenizer_<model>.json, for the Rust tokenizer tests.

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

# Conversations as chat data carries them beyond {role, content}: tool calls (content null),
# tool results, a tools list, non-ASCII and characters JSON or HTML escape, numbers of every
# JSON kind; rendered with and without the tools (templates that ignore them render the
# rest as they render it).
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city, \"now\" or later",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 1e1},
                },
                "required": ["city"],
            },
        },
    }
]

TOOL_CHATS = [
    [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Zürich? <now> & later"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": {"city": "Zürich", "unit": "c", "days": 2, "ratio": 0.5, "big": 1e20, "tiny": 1e-7, "ok": True, "none": None},
                    },
                }
            ],
        },
        {"role": "tool", "name": "get_weather", "content": '{"temp": 21.5, "sky": "clear & <sunny>"}'},
        {"role": "assistant", "content": "It is 21.5 °C and clear.\tTabs\u0001 and 日本."},
    ],
    [
        {"role": "user", "content": "Two calls, please."},
        {
            "role": "assistant",
            "content": "Calling both.",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima", "days": 3}}},
            ],
        },
        {"role": "tool", "content": "rain"},
        {"role": "tool", "content": "sun"},
        {"role": "assistant", "content": "Oslo: rain. Lima: sun."},
        {"role": "user", "content": "Thanks"},
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
        tool_chats = []
        for messages in TOOL_CHATS:
            for tools in (TOOLS, None):
                for gen in (True, False):
                    case = {"messages": messages, "tools": tools, "add_generation_prompt": gen}
                    try:
                        rendered = tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen)
                    except Exception as e:  # the template cannot render it (e.g. null content)
                        case["error"] = f"{type(e).__name__}: {e}"
                    else:
                        case["rendered"] = rendered
                        case["ids"] = tok(rendered, add_special_tokens=False)["input_ids"]
                    tool_chats.append(case)
        out = ROOT / "tests" / "fixtures" / "hf" / f"tokenizer_{name}.json"
        out.write_text(json.dumps({"model": name, "texts": cases, "chats": chats, "tool_chats": tool_chats}, ensure_ascii=False, indent=1) + "\n")
        print(out)


if __name__ == "__main__":
    main()

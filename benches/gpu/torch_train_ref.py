"""PyTorch's side of trainbench: whole training steps of Qwen2.5 on the same card, same run.

HF transformers' Qwen2ForCausalLM built from the same configs as benches/src/bin/trainbench.rs
(random init on the GPU), SDPA attention, fused AdamW (lr 5e-5, betas 0.9/0.95, weight decay
0.01), gradients clipped to norm 1.0 as the trainer does; batch B x T random token ids.
Figures (one JSON object per line, names matching trainbench's "ref" fields):
  train_MODEL_{bf16,f32}     forward + cross-entropy (labels = inputs) + backward + clip +
                             step, bf16 autocast or plain fp32; loss.item() every step
  diagnose_MODEL_{bf16,f32}  no_grad forward, log_softmax of the logits, gather of the
                             targets (what `trainer diagnose` computes), copied to the host
  objective_ce_fwd_bwd_{f32,bf16}_NxDxV  cross-entropy on materialised N x V logits of random
                             hidden states against the model's LM head, forward + backward
Memory: torch.cuda.max_memory_allocated over the figure ("peak_gib", weights included, as
trainbench's pool peak) and max_memory_reserved ("reserved_gib"). Step times are host times
around a synchronize, as trainbench's.

usage: python3 torch_train_ref.py [--model qwen2.5-1.5b] [--batch 4] [--seq 1024]
       [--warmup 3] [--steps 5] [--budget-s 60] [--plan train-bf16,diagnose-bf16,...]
       [--device cuda|cpu] [--smoke]
(--smoke: the tiny config, 2 x 32 tokens, 1 + 2 steps; with --device cpu it runs anywhere.)
"""
import argparse
import gc
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

# The same configs as trainbench.rs (HF config.json of Qwen/Qwen2.5-0.5B and -1.5B).
CONFIGS = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2,
                         max_position_embeddings=32768),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2,
                         max_position_embeddings=131072),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                 vocab_size=512, bos_token_id=None, eos_token_id=None),
}
COMMON = dict(vocab_size=151936, rms_norm_eps=1e-6, rope_theta=1000000.0,
              tie_word_embeddings=True, hidden_act="silu", use_sliding_window=False,
              bos_token_id=151643, eos_token_id=151643, attention_dropout=0.0)
DEFAULT_PLAN = "train-bf16,diagnose-bf16,train-f32,diagnose-f32,objective,objective-bf16"


def emit(row):
    print(json.dumps(row), flush=True)


def gib(x):
    return round(x / 2**30, 3)


def build_model(name, dev):
    from transformers import AutoModelForCausalLM, Qwen2Config

    kw = dict(COMMON)
    kw.update(CONFIGS[name])
    config = Qwen2Config(**kw)
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.to(dev, dtype=torch.float32).train(), config


class Bench:
    def __init__(self, args):
        self.a = args
        self.dev = args.device
        self.cuda = self.dev.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def memory(self, row):
        if self.cuda:
            row["peak_gib"] = gib(torch.cuda.max_memory_allocated())
            row["reserved_gib"] = gib(torch.cuda.max_memory_reserved())

    def autocast(self, precision):
        return torch.autocast(self.dev.split(":")[0], dtype=torch.bfloat16,
                              enabled=precision == "bf16")

    def timed(self, fn):
        """Warm-up (stopped after a third of the budget), then timed steps (stopped once the
        whole took the budget; at least one); per-step host ms, and every step's output."""
        a, start, outs = self.a, time.perf_counter(), []
        warmup = 0
        while warmup < a.warmup:
            outs.append(fn())
            self.sync()
            warmup += 1
            if time.perf_counter() - start > a.budget_s / 3:
                break
        ms = []
        while not ms or (len(ms) < a.steps and time.perf_counter() - start < a.budget_s):
            t = time.perf_counter()
            outs.append(fn())
            self.sync()
            ms.append((time.perf_counter() - t) * 1e3)
        return warmup, ms, outs

    def row(self, name, kind, precision, warmup, ms, tokens):
        mean = sum(ms) / len(ms)
        return {"name": name, "kind": kind, "model": self.a.model, "precision": precision,
                "batch": self.a.batch, "seq": self.a.seq, "warmup": warmup, "steps": len(ms),
                "ms_per_step": round(mean, 2), "ms_min": round(min(ms), 2),
                "ms_max": round(max(ms), 2), "tokens_per_s": round(tokens / mean * 1e3, 1)}

    def batch(self, vocab, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, vocab, (self.a.batch, self.a.seq), generator=g).to(self.dev)

    def train(self, model, precision):
        params = [p for p in model.parameters() if p.requires_grad]
        try:
            opt = torch.optim.AdamW(params, lr=5e-5, betas=(0.9, 0.95), eps=1e-8,
                                    weight_decay=0.01, fused=True)
        except (RuntimeError, ValueError):
            opt = torch.optim.AdamW(params, lr=5e-5, betas=(0.9, 0.95), eps=1e-8,
                                    weight_decay=0.01, foreach=True)
        ids = self.batch(model.config.vocab_size, 1)

        def step():
            with self.autocast(precision):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()

        self.reset_peak()
        warmup, ms, losses = self.timed(step)
        row = self.row(f"train_{self.a.model}_{precision}", "train", precision, warmup, ms,
                       ids.numel())
        self.memory(row)
        ln_v = math.log(model.config.vocab_size)
        row.update(loss_first=losses[0], loss_last=losses[-1],
                   ok=all(math.isfinite(x) for x in losses) and abs(losses[0] - ln_v) < 0.1 * ln_v)
        del opt
        return row

    def diagnose(self, model, precision):
        ids = self.batch(model.config.vocab_size, 2)
        targets = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], 1)

        @torch.no_grad()
        def forward():
            with self.autocast(precision):
                hidden = model.model(input_ids=ids).last_hidden_state
                logits = model.lm_head(hidden)
            log_p = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])
            return log_p.cpu()

        self.reset_peak()
        warmup, ms, outs = self.timed(forward)
        row = self.row(f"diagnose_{self.a.model}_{precision}", "diagnose", precision, warmup,
                       ms, ids.numel())
        self.memory(row)
        nll = -outs[-1][:, :-1].mean().item()
        ln_v = math.log(model.config.vocab_size)
        row.update(nll=nll, ok=math.isfinite(nll) and abs(nll - ln_v) < 0.1 * ln_v)
        return row

    def objective(self, model, precision):
        n, d = self.a.batch * self.a.seq, model.config.hidden_size
        v = model.config.vocab_size
        w = model.lm_head.weight
        g = torch.Generator().manual_seed(7)
        x = torch.randn(n, d, generator=g).to(self.dev).requires_grad_()
        y = torch.randint(0, v, (n,), generator=g).to(self.dev)

        def ce():
            with self.autocast(precision):
                loss = F.cross_entropy(x @ w.t(), y)
            loss.backward()
            x.grad, w.grad = None, None
            return loss.item()

        self.sync()
        base = torch.cuda.memory_allocated() if self.cuda else 0
        self.reset_peak()
        warmup, ms, losses = self.timed(ce)
        shape = f"{n}x{d}x{v}"
        row = self.row(f"objective_ce_fwd_bwd_{precision}_{shape}", "objective", precision,
                       warmup, ms, n)
        self.memory(row)
        if self.cuda:
            row["extra_peak_gib"] = gib(torch.cuda.max_memory_allocated() - base)
        mean = row["ms_per_step"]
        row.update(ms=mean, tflops=round(6 * n * d * v / mean / 1e9, 3), loss=losses[-1],
                   ok=math.isfinite(losses[-1]))
        return row


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qwen2.5-1.5b", choices=sorted(CONFIGS))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=60.0)
    p.add_argument("--plan", default=DEFAULT_PLAN)
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        given = set(argv)
        a.model = a.model if "--model" in given else "tiny"
        a.batch = a.batch if "--batch" in given else 2
        a.seq = a.seq if "--seq" in given else 32
        a.warmup = a.warmup if "--warmup" in given else 1
        a.steps = a.steps if "--steps" in given else 2
    import transformers

    b = Bench(a)
    emit({"name": "torch_device", "adapter": torch.cuda.get_device_name() if b.cuda else a.device,
          "torch": torch.__version__, "cuda": torch.version.cuda,
          "transformers": transformers.__version__,
          "float32_matmul_precision": torch.get_float32_matmul_precision()})
    t = time.perf_counter()
    model, config = build_model(a.model, a.device)
    emit({"name": "torch_model", "model": a.model,
          "params": sum(p.numel() for p in model.parameters()),
          "attn_implementation": getattr(config, "_attn_implementation", None),
          "init_s": round(time.perf_counter() - t, 2)})
    failed = 0
    for item in a.plan.split(","):
        kind, _, precision = item.partition("-")
        precision = precision or "f32"
        t = time.perf_counter()
        try:
            if kind not in ("train", "diagnose", "objective") or precision not in ("bf16", "f32"):
                raise ValueError(f"--plan item {item!r}: expected train-/diagnose-/objective-"
                                 "with bf16 or f32")
            row = getattr(b, kind)(model, precision)
        except Exception as e:  # one figure's failure (out of memory, say) must not end the run
            row = {"name": f"{kind}_{a.model}_{precision}", "error": f"{type(e).__name__}: {e}"}
        model.zero_grad(set_to_none=True)
        gc.collect()
        if b.cuda:
            torch.cuda.empty_cache()
        row["seconds"] = round(time.perf_counter() - t, 2)
        failed += "error" in row or row.get("ok") is not True
        emit(row)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

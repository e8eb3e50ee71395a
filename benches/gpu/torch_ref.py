"""PyTorch reference figures for the GPU benchmark, measured in the same run as ours.

Prints one JSON object per line: {"name", "ms", "tflops"?}. Run by benches/gpu/run.sh on a
CUDA machine; it needs only torch.
"""
import json
import sys

import torch
import torch.nn.functional as F


def timed(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def emit(name, ms, flops=None):
    row = {"name": name, "ms": round(ms, 4)}
    if flops:
        row["tflops"] = round(flops / ms / 1e9, 2)
    print(json.dumps(row), flush=True)


def main():
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    for n, dtype, tag in [(4096, torch.float32, "f32"), (8192, torch.float16, "f16")]:
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        emit(f"matmul_{tag}_{n}", timed(lambda: a @ b), 2 * n**3)
    # Attention as in Qwen2.5-1.5B: 12 query heads, 2 kv heads, head_dim 128, causal.
    for t in [1024, 4096]:
        q = torch.randn(1, 12, t, 128, device=dev, requires_grad=True)
        k = torch.randn(1, 2, t, 128, device=dev, requires_grad=True)
        v = torch.randn(1, 2, t, 128, device=dev, requires_grad=True)
        fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        flops = 4 * 12 * t * t * 128 / 2
        emit(f"attention_fwd_f32_T{t}", timed(fwd), flops)

        def fwd_bwd():
            out = fwd()
            out.backward(torch.ones_like(out))

        emit(f"attention_fwd_bwd_f32_T{t}", timed(fwd_bwd), 3.5 * flops)
    # Cross-entropy on materialised logits (the unfused path the fused objective replaces).
    n, d, vocab = 4096, 1536, 151936
    x = torch.randn(n, d, device=dev, requires_grad=True)
    w = torch.randn(vocab, d, device=dev, requires_grad=True) * 0.02
    y = torch.randint(0, vocab, (n,), device=dev)

    def ce():
        loss = F.cross_entropy(x @ w.t(), y)
        loss.backward()

    torch.cuda.reset_peak_memory_stats()
    emit("lm_head_ce_fwd_bwd_f32", timed(ce), 6 * n * d * vocab)
    print(json.dumps({"name": "lm_head_ce_peak_gib",
                      "value": round(torch.cuda.max_memory_allocated() / 2**30, 2)}))
    print(json.dumps({"name": "device", "value": torch.cuda.get_device_name()}), file=sys.stderr)


if __name__ == "__main__":
    main()

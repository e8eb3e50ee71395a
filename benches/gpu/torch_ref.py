"""PyTorch reference figures for the GPU benchmark, measured in the same run as ours.

Prints one JSON object per line: {"name", "ms", "tflops"? | "gbps"?}, named as gpubench's
"ref" fields (benches/src/bin/gpubench.rs), first a {"name": "device"} row. Run by
benches/gpu/run.sh on a CUDA machine; it needs only torch.
"""
import json
import statistics
import time

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


def host_timed(fn, warmup=2, reps=5):
    """Median host time of fn() followed by a synchronize (for launch-bound work)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def emit(name, ms, flops=None, nbytes=None, **extra):
    row = {"name": name, "ms": round(ms, 4)}
    if flops:
        row["tflops"] = round(flops / ms / 1e9, 3)
    if nbytes:
        row["gbps"] = round(nbytes / ms / 1e6, 1)
    row.update(extra)
    print(json.dumps(row), flush=True)


def main():
    dev = "cuda"
    print(json.dumps({"name": "device", "adapter": torch.cuda.get_device_name(),
                      "torch": torch.__version__, "cuda": torch.version.cuda}), flush=True)
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
        # bf16 (flash attention): the counterpart of our f16 matmul blocks.
        qh, kh, vh = (x.detach().bfloat16().requires_grad_() for x in (q, k, v))

        def fwd_bwd_bf16():
            out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, enable_gqa=True)
            out.backward(torch.ones_like(out))

        emit(f"attention_fwd_bwd_bf16_T{t}", timed(fwd_bwd_bf16), 3.5 * flops)
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
    del x, w, y
    # Softmax over vocabulary-long rows: as many rows as gpubench fits in one 2 GiB binding.
    rows = 3533
    logits = torch.randn(rows, vocab, device=dev) * 4
    emit(f"softmax_f32_{rows}x{vocab}", timed(lambda: torch.softmax(logits, -1)),
         nbytes=2 * rows * vocab * 4)
    del logits
    # AdamW (fused) over 500M parameters in 50 tensors of 10M; 28 bytes per parameter.
    count, each = 50, 10_000_000
    params = [torch.randn(each, device=dev, requires_grad=True) for _ in range(count)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    emit(f"adamw_f32_{count * each // 1_000_000}M", timed(opt.step), nbytes=28 * count * each)
    del opt, params
    # Dispatch overhead: 10,000 tiny elementwise ops, then one synchronize (host time).
    ops = 10_000
    small = torch.full((256,), 0.5, device=dev)

    def chain():
        z = small
        for _ in range(ops):
            z = z + 1.0
        return z

    ms = host_timed(chain)
    emit(f"dispatch_{ops // 1000}k_tiny", ms, us_per_op=round(ms * 1e3 / ops, 3))


if __name__ == "__main__":
    main()

"""Print gpubench's figures beside PyTorch's from the same run, as a Markdown table.

usage: python3 benches/gpu/compare.py [GPUBENCH.jsonl [TORCH_REF.jsonl]]
(defaults: $OUT/gpubench.jsonl and $OUT/torch_ref.jsonl, or ./gpubench.jsonl and
./torch_ref.jsonl when OUT is unset). Each of our rows is matched to the PyTorch row named in
its "ref" field (else the row of the same name). "ours/torch" is our speed over PyTorch's: the
TFLOP/s (or GB/s) ratio where both sides give one, else PyTorch's ms over ours; above 1 is
faster than PyTorch. Lines that are not JSON objects are skipped.
"""
import json
import os
import sys

# Targets from the engine issue: our speed over PyTorch's on the same card.
TARGETS = {"matmul_f32": 0.50, "matmul_f16_coop": 0.40}


def load(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "name" in row:
                    rows.append(row)
    except OSError as e:
        print(f"compare.py: cannot read {path}: {e}", file=sys.stderr)
    return rows


def rate(row):
    """(value, unit) of the row's throughput, or (None, None)."""
    for key, unit in (("tflops", "TFLOP/s"), ("gbps", "GB/s")):
        if isinstance(row.get(key), (int, float)):
            return row[key], unit
    return None, None


def show_rate(row):
    """The throughput column: TFLOP/s, GB/s, or microseconds per op."""
    if row is None:
        return "-"
    v, unit = rate(row)
    if v is not None:
        return f"{fmt(v)} {unit}"
    if isinstance(row.get("us_per_op"), (int, float)):
        return f"{fmt(row['us_per_op'])} us/op"
    return "-"


def fmt(x, digits=3):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def speed_ratio(ours, ref):
    (a, ua), (b, ub) = rate(ours), rate(ref)
    if a is not None and b is not None and ua == ub and b > 0:
        return a / b
    if ours.get("ms") and ref.get("ms"):
        return ref["ms"] / ours["ms"]
    return None


def target_for(name):
    if name.startswith("matmul_f32"):
        return TARGETS["matmul_f32"]
    if name.startswith("matmul_f16") and "_coop" in name:
        return TARGETS["matmul_f16_coop"]
    return None


def main(argv):
    out = os.environ.get("OUT", ".")
    ours_path = argv[1] if len(argv) > 1 else os.path.join(out, "gpubench.jsonl")
    ref_path = argv[2] if len(argv) > 2 else os.path.join(out, "torch_ref.jsonl")
    ours, refs = load(ours_path), load(ref_path)
    by_name = {r["name"]: r for r in refs}
    dev_ours = next((r for r in ours if r["name"] == "device"), {})
    dev_ref = by_name.get("device", {})
    print(f"ours: {dev_ours.get('adapter', '?')} ({dev_ours.get('backend', '?')}), "
          f"quick={dev_ours.get('quick', '?')}; "
          f"PyTorch: {dev_ref.get('adapter', '?')} (torch {dev_ref.get('torch', '?')}, "
          f"CUDA {dev_ref.get('cuda', '?')})")
    print()
    print("| figure | ours ms | ours rate | PyTorch ms | PyTorch rate | ours/torch | target "
          "| check err | ok |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    used = {"device"}
    failures = 0
    for r in ours:
        name = r["name"]
        if name == "device":
            continue
        if "error" in r:
            failures += 1
            print(f"| {name} | ERROR: {r['error']} | | | | | | | NO |")
            continue
        ref = by_name.get(r.get("ref", name))
        if ref is not None:
            used.add(ref["name"])
        ratio = speed_ratio(r, ref) if ref else None
        target = target_for(name)
        mark = ""
        if ratio is not None and target is not None:
            mark = f"{target:.2f} {'met' if ratio >= target else 'missed'}"
        ok = r.get("ok") is True
        failures += not ok
        errs = [r.get(k) for k in ("check_max_err", "spot_max_err") if r.get(k) is not None]
        err = max(errs) if errs else None
        print(f"| {name} | {fmt(r.get('ms'), 4)} | {show_rate(r)} | "
              f"{fmt(ref.get('ms'), 4) if ref else '-'} | {show_rate(ref)} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} | {mark} | "
              f"{'-' if err is None else f'{err:.1e}'} | {'yes' if ok else 'NO'} |")
    rest = [r for r in refs if r["name"] not in used]
    if rest:
        print()
        print("PyTorch only: " + "; ".join(
            f"{r['name']} " + (f"{fmt(r['ms'], 4)} ms" if "ms" in r else str(r.get("value")))
            + (f" ({fmt(rate(r)[0])} {rate(r)[1]})" if rate(r)[0] is not None else "")
            for r in rest))
    if not ours:
        print(f"\ncompare.py: no figures in {ours_path}", file=sys.stderr)
        return 1
    if failures:
        print(f"\n{failures} of our figure(s) failed their checks or did not run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

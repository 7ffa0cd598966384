"""Where a Flux denoising step goes: the bundle's TorchScript transformer under torch.profiler,
its kernels grouped into matrix products, attention (ours), elementwise, norms and copies.

    GRAT_OPS_LIB=build/kernels/libgrat_kernels.so python3 bench/step_profile.py \
        --bundle /tmp/flux-dev-bundle --res 1024 --attention B --out bench/results/P.json

One forward is one step (flux-dev: guidance-distilled, no true CFG). The inputs are those the
engine passes (bench/engine_bench.cpp's layout: packed latents, T5 sequence, CLIP pooled vector,
sigma, guidance, token grid, attention settings), with the text from the bundle's own encoders.
Prints the table and writes JSON (GPU, command, commit). On a CUDA device the rows are GPU
kernel time; on the CPU, operator self time (the same grouping, by operator name).
"""
import argparse
import json
import os
import re
import sys
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from provenance import commit_of  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# Checked in order: the first pattern a kernel (or CPU operator) name matches is its group.
GROUPS = [
    ("attention (ours)", r"attention|flash|fmha|sdpa|softmax|grat::(attention|sdpa)$"),
    ("matrix products", r"gemm|cutlass|xmma|nvjet|cublas|sm90_|sm80_|"
                        r"aten::(mm|addmm|bmm|linear|matmul)$"),
    ("norms", r"norm|adaln|welford|aten::(layer_norm|rms_norm|native_layer_norm|mean|sum|var)$"),
    ("copies, cat, index", r"copy|cat|index|gather|scatter|memcpy|memset|transpose|permute|"
                           r"regroup|ungroup|"
                           r"aten::(contiguous|clone|stack|select|slice|narrow|view|reshape|"
                           r"as_strided|unsqueeze|squeeze|_unsafe_view|_reshape_alias|unflatten|"
                           r"t|to|expand|repeat_interleave)$"),
    ("elementwise", r"elementwise|vectorized|unrolled|reduce|activation|gelu|silu|sigmoid|tanh|"
                    r"rope|residual|"
                    r"aten::(add|mul|sub|div|exp|cos|sin|pow|neg|rsqrt|reciprocal|where|chunk|"
                    r"add_|mul_|addcmul)$"),
]
OTHER = "other"


def short_name(name: str) -> str:
    """A CUDA kernel's own name without namespaces, template arguments and parameters
    ("void grat::cuda::(anonymous namespace)::norm_kernel<bf16>(NormParams)" -> "norm_kernel":
    our namespace must not file every grat:: kernel under attention); operator names
    ("aten::mm") and unmangled names stay as they are."""
    if "(" not in name:
        return name
    s = name[5:] if name.startswith("void ") else name
    s = s.replace("(anonymous namespace)", "anon").split("(")[0]
    while "<" in s:   # innermost template argument lists first
        s2 = re.sub(r"<[^<>]*>", "", s)
        if s2 == s:
            break
        s = s2
    return s.split("::")[-1]


def group_of(name: str) -> str:
    low = short_name(name).lower()
    for label, pattern in GROUPS:
        if re.search(pattern, low):
            return label
    return OTHER


def inputs(bundle: str, res: int, batch: int, device: str, dtype: torch.dtype):
    """(transformer, args) as the engine calls it for a res x res image."""
    m = yaml.safe_load(open(os.path.join(bundle, "model.yaml")))
    files = m["files"]
    load = lambda k: torch.jit.load(os.path.join(bundle, files[k]), map_location=device)  # noqa
    transformer, t5, clip = load("transformer"), load("t5"), load("clip")
    for mod in (transformer, t5, clip):
        mod.eval()
    cell = m["vae_scale"] * m["patch"]
    gh = gw = res // cell
    t5_ids = torch.ones(batch, m["text"]["t5_max_length"], dtype=torch.long, device=device)
    clip_ids = torch.ones(batch, m["text"]["clip_max_length"], dtype=torch.long, device=device)
    with torch.inference_mode():
        seq = t5(t5_ids, None).to(dtype)
        pooled = clip(clip_ids, None)[1].to(dtype)
    channels = m["latent_channels"] * m["patch"] ** 2
    x = torch.randn(batch, gh * gw, channels, device=device, dtype=dtype)
    t = torch.full((batch,), 0.5, device=device)
    guided = any(n.startswith("time_text_embed.guidance_embedder.")
                 for n, _ in transformer.named_parameters())
    g = torch.full((batch,), float(m["defaults"]["guidance"]), device=device) if guided else None
    return transformer, m, (x, seq, pooled, t, g, gh, gw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--attention", default="B", choices=["full", "B", "X"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--steps", type=int, default=3, help="profiled forwards (after 2 warm-up)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="")
    args = ap.parse_args(argv)

    lib = os.environ.get("GRAT_OPS_LIB", os.path.join(REPO, "build", "kernels", "libgrat_kernels.so"))
    torch.ops.load_library(lib)
    cuda = args.device.startswith("cuda")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
        args.dtype, torch.bfloat16 if cuda else torch.float32)
    transformer, m, (x, seq, pooled, t, g, gh, gw) = inputs(args.bundle, args.res, args.batch,
                                                          args.device, dtype)
    group = m["grat"]["group"]
    call = lambda: transformer(x, seq, pooled, t, g, gh, gw, args.attention,  # noqa: E731
                               int(group[0]), int(group[1]), int(m["grat"]["radius"]))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(2):
            call()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            call()
        sync()
        wall = (time.perf_counter() - t0) / args.steps
        activities = [torch.profiler.ProfilerActivity.CPU]
        if cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(args.steps):
                call()
            sync()

    totals, counts = {}, {}
    if cuda:  # GPU kernels: every device-side event
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        timed = [(e.name, e.device_time_total) for e in events]
    else:  # leaf CPU operators: self time, so nothing counts twice
        averages = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        timed = [(e.key, e.self_cpu_time_total) for e in averages]
        counts_cpu = {e.key: e.count for e in averages}
    for name, us in timed:
        label = group_of(name)
        totals[label] = totals.get(label, 0.0) + us / 1000 / args.steps
        n = 1 if cuda else counts_cpu.get(name, 1)
        counts[label] = counts.get(label, 0) + n / args.steps
    busy = sum(totals.values())
    kind = "GPU ms" if cuda else "CPU ms"
    print(f"{args.res}^2 batch {args.batch} {args.attention}: wall {wall * 1000:.1f} ms per step, "
          f"{kind.split()[0]} busy {busy:.1f} ms")
    print(f"{'group':22} {kind:>8} {'share':>6} {'kernels' if cuda else 'calls':>8}")
    rows = []
    for label in [g[0] for g in GROUPS] + [OTHER]:
        if label not in totals:
            continue
        share = totals[label] / busy if busy else 0
        print(f"{label:22} {totals[label]:8.2f} {100 * share:5.1f}% {counts[label]:8.0f}")
        rows.append({"group": label, "ms": totals[label], "share": share,
                     "count": counts[label]})
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    result = {"benchmark": "step_profile", "gpu": gpu, "device": args.device,
              "command": "python3 bench/step_profile.py " + " ".join(argv or sys.argv[1:]),
              "commit": args.commit or commit_of(), "bundle": m["name"], "res": args.res,
              "batch": args.batch, "attention": args.attention, "dtype": str(dtype),
              "wall_ms_per_step": wall * 1000, "busy_ms_per_step": busy, "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

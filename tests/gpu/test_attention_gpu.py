"""GPU tests of grat::attention (CUDA) against the CPU reference and a float32 masked SDPA.

Usage: python3 test_attention_gpu.py <libgrat_kernels.so> [--small] [--seed N] [--errors-only]
Every case runs on the portable mma.sync kernel (GRAT_FORCE_PORTABLE=1) and on the default
path (the Hopper wgmma kernel on sm_90; SDPA for pattern full); pattern full also on our own
kernel (GRAT_FULL_KERNEL=own).

Fresh random inputs for every case; the op's output memory is poisoned (NaN) first through the
caching allocator (a NaN-filled block of the same size is freed right before the call, so the
op's torch.empty gets it back); every output element must be finite and the relative error
||out - ref|| / ||ref|| must be within the bf16/fp16 band. --small runs one tiny case (for
compute-sanitizer). Exit status 1 on any failure.
"""
import faulthandler
import math
import os
import random
import sys

import torch
import torch.nn.functional as F

TOL = {torch.bfloat16: 2e-2, torch.float16: 5e-3}  # ~2x PyTorch's own low-precision error


def grat(q, k, v, c, grouped=False):
    return torch.ops.grat.attention(q, k, v, c["grid"], c["group"], c["pattern"], c.get("radius", 1),
                                    c["text"], c["text_first"], c.get("valid", []), grouped)


def reference_sdpa(q, k, v, c):
    """float32 SDPA with the op's own boolean mask, per batch item (valid text may differ)."""
    outs = []
    valid = c.get("valid", [])
    for b in range(q.shape[0]):
        vb = c["text"] if not valid else (valid[0] if len(valid) == 1 else valid[b])
        m = torch.ops.grat.attention_mask(c["grid"], c["group"], c["pattern"], c.get("radius", 1),
                                          c["text"], c["text_first"], vb, False).to(q.device)
        qb, kb, vb_ = (x[b:b + 1].float().transpose(1, 2) for x in (q, k, v))
        outs.append(F.scaled_dot_product_attention(qb, kb, vb_, attn_mask=m).transpose(1, 2))
    return torch.cat(outs, 0)


def poison_allocator(shape, dtype):
    x = torch.full(shape, float("nan"), dtype=dtype, device="cuda")
    del x


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def cases(small):
    if small:
        return [dict(grid=[5, 7], group=[2, 3], pattern="B", text=9, text_first=True, valid=[6],
                     B=1, H=2, D=64, dtype=torch.bfloat16)]
    cs = []
    # Hand-picked: exact multiples of the tiles, ragged edges, 3-D, both text orders, padding.
    cs.append(dict(grid=[32, 32], group=[16, 16], pattern="B", text=64, text_first=True,
                   B=1, H=2, D=128, dtype=torch.bfloat16))
    cs.append(dict(grid=[45, 37], group=[16, 16], pattern="X", text=77, text_first=True,
                   valid=[50], B=2, H=3, D=128, dtype=torch.bfloat16))
    cs.append(dict(grid=[9, 20, 22], group=[4, 8, 8], pattern="B", text=40, text_first=False,
                   valid=[33, 12], B=2, H=2, D=128, dtype=torch.float16))
    cs.append(dict(grid=[9, 20, 22], group=[4, 8, 8], pattern="X", text=40, text_first=False,
                   B=1, H=2, D=64, dtype=torch.bfloat16))
    cs.append(dict(grid=[30, 50], group=[8, 8], pattern="B", radius=2, text=0, text_first=True,
                   B=2, H=2, D=64, dtype=torch.float16))
    cs.append(dict(grid=[40, 24], group=[16, 16], pattern="full", text=130, text_first=True,
                   valid=[0], B=1, H=2, D=128, dtype=torch.bfloat16))
    cs.append(dict(grid=[3, 17, 13], group=[2, 5, 4], pattern="full", text=10, text_first=False,
                   valid=[10, 3, 0], B=3, H=1, D=64, dtype=torch.float16))
    cs.append(dict(grid=[1, 1], group=[1, 1], pattern="B", text=5, text_first=True,
                   B=1, H=1, D=64, dtype=torch.bfloat16))
    # Raster inputs whose key tiles are boxes of the token grid (the sm90 kernel's 5-D TMA
    # maps): 2-D with batch, text last and padding; 8 x 16 groups; 3-D, batch 1.
    cs.append(dict(grid=[48, 32], group=[16, 16], pattern="X", text=100, text_first=False,
                   valid=[70, 20], B=2, H=3, D=128, dtype=torch.float16))
    cs.append(dict(grid=[16, 64], group=[8, 16], pattern="B", radius=2, text=0, text_first=True,
                   B=1, H=2, D=64, dtype=torch.bfloat16))
    cs.append(dict(grid=[8, 16, 24], group=[4, 8, 8], pattern="B", text=40, text_first=False,
                   valid=[33], B=1, H=2, D=128, dtype=torch.bfloat16))
    cs.append(dict(grid=[4, 32, 32], group=[2, 8, 8], pattern="X", text=64, text_first=True,
                   B=1, H=1, D=64, dtype=torch.float16))
    # Random layouts.
    rng = random.Random(1234)
    for i in range(28):
        d3 = rng.random() < 0.4
        grid = [rng.randint(1, 6), rng.randint(1, 30), rng.randint(1, 30)] if d3 else \
               [rng.randint(1, 70), rng.randint(1, 70)]
        group = [rng.randint(1, g) for g in grid]
        pat = rng.choice(["B", "B", "X", "X", "full"])
        text = rng.choice([0, 0, 7, 64, 200])
        B = rng.choice([1, 1, 2, 3])
        valid = []
        if text and rng.random() < 0.5:
            valid = [rng.randint(0, text)] if rng.random() < 0.5 else \
                    [rng.randint(0, text) for _ in range(B)]
        cs.append(dict(grid=grid, group=group, pattern=pat, radius=rng.choice([1, 1, 2]), text=text,
                       text_first=rng.random() < 0.5, valid=valid, B=B, H=rng.randint(1, 3),
                       D=rng.choice([64, 128]),
                       dtype=rng.choice([torch.bfloat16, torch.float16])))
    return cs


def run_case(c, gen):
    n = c["text"] + math.prod(c["grid"])
    shape = (c["B"], n, c["H"], c["D"])
    q, k, v = (torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32).to(c["dtype"])
               for _ in range(3))
    poison_allocator(shape, c["dtype"])
    out = grat(q, k, v, c)
    torch.cuda.synchronize()
    res = {"nan": bool(torch.isnan(out).any() or torch.isinf(out).any())}
    ref = reference_sdpa(q, k, v, c)
    res["err_sdpa"] = rel(out, ref)
    if n * c["B"] * c["H"] <= 40000:
        cpu = grat(q.float().cpu(), k.float().cpu(), v.float().cpu(), c)
        res["err_cpu"] = rel(out.cpu(), cpu)
    # grouped=True: the same function on group-major inputs.
    qg, kg, vg = (torch.ops.grat.regroup(x, c["grid"], c["group"], 1, c["text"], c["text_first"])
                  for x in (q, k, v))
    poison_allocator(shape, c["dtype"])
    outg = grat(qg, kg, vg, c, grouped=True)
    back = torch.ops.grat.ungroup(outg, c["grid"], c["group"], 1, c["text"], c["text_first"])
    res["nan"] |= bool(torch.isnan(outg).any())
    res["err_grouped"] = rel(back, ref)
    # The CUDA regroup kernel moves rows: bitwise equal to the CPU index_select, and inverse.
    perm = (c["grid"], c["group"], 1, c["text"], c["text_first"])
    res["regroup_exact"] = (torch.equal(qg.cpu(), torch.ops.grat.regroup(q.cpu(), *perm)) and
                            torch.equal(torch.ops.grat.ungroup(qg, *perm), q))
    # Non-contiguous inputs (a [B, H, N, D] tensor transposed) take the strided path.
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)
    res["err_strided"] = rel(grat(qt, k, v, c), ref)
    tol = TOL[c["dtype"]]
    errs = [res[k] for k in res if k.startswith("err")]
    res["ok"] = (not res["nan"]) and res["regroup_exact"] and all(e <= tol for e in errs)
    return res


ERROR_CASES = [  # (dtype, head_dim, tokens): each must raise a RuntimeError, never crash
    (torch.float32, 64, 16), (torch.bfloat16, 96, 16), (torch.float16, 256, 16),
    (torch.bfloat16, 64, 15),  # token count != prod(grid): the contract's own check
]


def error_case(i):
    dtype, D, n = ERROR_CASES[i]
    c = dict(grid=[4, 4], group=[2, 2], pattern="B", text=0, text_first=True)
    x = torch.randn(1, n, 1, D, device="cuda", dtype=dtype)
    try:
        grat(x, x, x, c)
    except RuntimeError as e:
        print(f"ok: {dtype} D={D} tokens={n} -> {str(e).splitlines()[0][:110]}")
        return True
    print(f"FAIL: no error for dtype={dtype} D={D} tokens={n}")
    return False


def check_errors():
    """Unsupported combinations must raise, never compute or crash (each in its own process)."""
    import subprocess
    ok = True
    for i in range(len(ERROR_CASES)):
        r = subprocess.run([sys.executable, __file__, sys.argv[1], "--error-case", str(i)],
                           capture_output=True, text=True)
        print(r.stdout.strip() or f"FAIL: error case {i} exited {r.returncode}: {r.stderr[-300:]}")
        ok &= r.returncode == 0
    return ok


def check_regroup_shapes(gen):
    """regroup/ungroup of CUDA tensors of other ranks, dims, dtypes (every vector width of the
    row copy) and strides equal the CPU op bitwise."""
    ok = True
    grid, group = [5, 7], [2, 3]  # ragged edge groups
    n = 35 + 4
    shapes = [((n, 3), torch.uint8, 0), ((2, n, 5), torch.float16, 1), ((n,), torch.float32, 0),
              ((3, n, 2, 4), torch.bfloat16, -3), ((2, n, 3, 8), torch.float64, 1)]
    for shape, dtype, dim in shapes:
        x = (torch.rand(shape, device="cuda", generator=gen) * 100).to(dtype)
        for text_first in (True, False):
            args = (grid, group, dim, 4, text_first)
            g = torch.ops.grat.regroup(x, *args)
            same = torch.equal(g.cpu(), torch.ops.grat.regroup(x.cpu(), *args)) and \
                torch.equal(torch.ops.grat.ungroup(g, *args), x)
            print(f"{'ok  ' if same else 'FAIL'} regroup {tuple(shape)} {dtype} dim={dim} "
                  f"text_first={text_first}")
            ok &= same
    xt = torch.rand(4, n, device="cuda", generator=gen).t()  # non-contiguous, dim 0
    same = torch.equal(torch.ops.grat.regroup(xt, grid, group, 0, 4).cpu(),
                       torch.ops.grat.regroup(xt.cpu(), grid, group, 0, 4))
    print(f"{'ok  ' if same else 'FAIL'} regroup of a transposed tensor")
    return ok and same


def main():
    faulthandler.enable()
    torch.ops.load_library(sys.argv[1])
    if "--error-case" in sys.argv:
        sys.exit(0 if error_case(int(sys.argv[sys.argv.index("--error-case") + 1])) else 1)
    if "--errors-only" in sys.argv:
        sys.exit(0 if check_errors() else 1)
    small = "--small" in sys.argv
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else \
        random.SystemRandom().randint(0, 2**31)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    print(f"GPU: {torch.cuda.get_device_name()}  seed={seed}")
    failures = 0
    if not small:  # under compute-sanitizer only our kernels on one small case
        failures += 0 if check_regroup_shapes(gen) else 1
    sm90 = torch.cuda.get_device_capability()[0] == 9
    # Paths: "portable" (mma.sync kernel for every pattern), "default" (sm90 kernel on
    # Hopper, SDPA for pattern full), "own-full" (our default kernel for pattern full).
    def paths(c):
        ps = ["portable", "default"]
        return ps + (["own-full"] if c["pattern"] == "full" else [])
    for i, (c, path) in enumerate((c, path) for c in cases(small) for path in paths(c)):
        os.environ["GRAT_FORCE_PORTABLE"] = "1" if path == "portable" else "0"
        os.environ["GRAT_FULL_KERNEL"] = "own" if path == "own-full" else "sdpa"
        r = run_case(c, gen)
        desc = (f"{c['pattern']:4s} grid={c['grid']} group={c['group']} text={c['text']}"
                f"{'F' if c['text_first'] else 'L'} valid={c.get('valid', [])} B={c['B']} H={c['H']}"
                f" D={c['D']} {str(c['dtype'])[6:]}")
        errs = " ".join(f"{k[4:]}={v:.1e}" for k, v in r.items() if k.startswith("err"))
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {i:2d} {path:9s} {desc} | {errs}{' NaN!' if r['nan'] else ''}")
        failures += not r["ok"]
    os.environ.pop("GRAT_FORCE_PORTABLE")
    os.environ.pop("GRAT_FULL_KERNEL")
    print(f"device {torch.cuda.get_device_name()}, sm90 path {'tested' if sm90 else 'absent'}")
    print(f"{failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

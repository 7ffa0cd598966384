"""GPU test of the fused elementwise ops (grat::qk_norm_rope, adaln, gated_residual,
gated_residual_adaln, gelu_tanh; kernels/src/cuda/fused_*.cu) against their CPU reference.

Usage: python3 test_fused_gpu.py <libgrat_kernels.so> [--small]
Fresh random inputs per run (seed printed; GRAT_TEST_SEED=n repeats one), bf16/fp16/fp32, the
Flux widths and odd ones (element loads, the ATen fallback past the norm kernel's registers),
strided and misaligned views, both qk streams in either order. Output memory is poisoned
(NaN) through the caching allocator before every call, so an element the kernel skips shows.
Tolerance: max |cuda - cpu| / max |cpu| within two output roundings (summation order, rsqrt,
tanh differ); the gated residual and copied prefixes are bitwise (same float32 ops, no FMA).
Without --small it also times the Flux 1024^2 shapes against the unfused ATen chains.
--small: a few small cases (for compute-sanitizer). Exit 1 on failure.
"""
import os
import sys

import torch
import torch.nn.functional as F

torch.ops.load_library(sys.argv[1])
SMALL = "--small" in sys.argv
SEED = int(os.environ.get("GRAT_TEST_SEED", torch.seed() % 2**31))
print("seed", SEED)
G = torch.Generator(device="cuda").manual_seed(SEED)
TOL = {torch.float32: 1e-5, torch.bfloat16: 2**-6, torch.float16: 2**-9}  # two ulps at the max
EPS = 1e-6
failures = 0


def randn(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, device="cuda", generator=G) * scale).to(dtype)


def poison(shape, dtype, outputs=1):
    """NaN blocks of the outputs' size, freed at once: the op's outputs likely reuse them."""
    blocks = [torch.full(shape, float("nan"), dtype=dtype, device="cuda") for _ in range(outputs)]
    del blocks


def cpu(t):
    return None if t is None else t.cpu()


def report(name, got, expect, exact=False):
    global failures
    got = got.cpu()
    ok = got.shape == expect.shape and got.dtype == expect.dtype and not got.isnan().any()
    diff = -1.0
    if ok and got.numel():
        d = (got.double() - expect.double()).abs().max().item()
        diff = d / max(expect.double().abs().max().item(), 1e-30)
        ok = d == 0 if exact else diff <= TOL[got.dtype]
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {'bitwise' if exact else 'max rel'} {diff:.2e}")


def misaligned(t):
    """The same values one element into a fresh buffer: rows off 16-byte alignment."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    view = flat[1:].view(t.shape)
    view.copy_(t)
    return view


# ----------------------------------------------------------------------------- norms

def check_norms(tag, x, y, gate, scale, shift):
    b, n, c = x.shape
    expect = torch.ops.grat.adaln(cpu(x), cpu(scale), cpu(shift), EPS)
    poison((b, n, c), x.dtype)
    report(f"adaln {tag}", torch.ops.grat.adaln(x, scale, shift, EPS), expect)
    expect_r = torch.ops.grat.gated_residual(cpu(x), cpu(y), cpu(gate))
    poison((b, n, c), x.dtype)
    report(f"gated_residual {tag}", torch.ops.grat.gated_residual(x, y, gate), expect_r, True)
    er, en = torch.ops.grat.gated_residual_adaln(cpu(x), cpu(y), cpu(gate), cpu(scale),
                                                 cpu(shift), EPS)
    poison((b, n, c), x.dtype, outputs=2)
    r, nr = torch.ops.grat.gated_residual_adaln(x, y, gate, scale, shift, EPS)
    report(f"gated_residual_adaln residual {tag}", r, er, True)
    report(f"gated_residual_adaln norm {tag}", nr, en)


def norm_cases():
    widths = (8, 100, 3071) if SMALL else (8, 24, 100, 128, 3071, 3072, 16392)
    batches = ((1, 37),) if SMALL else ((1, 37), (2, 300), (3, 1))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for c in widths:
            for b, n in batches:
                mod = randn(b, 6 * c, dtype=dtype, scale=0.5)  # chunks of one linear: strided
                scale, shift, gate = mod[:, c:2 * c], mod[:, :c], mod[:, 2 * c:3 * c]
                x = randn(b, n, c, dtype=dtype, scale=3) + 1
                y = randn(b, n, c, dtype=dtype)
                tag = f"{dtype} {b}x{n}x{c}"
                check_norms(tag, x, y, gate, scale, shift)
                if SMALL:
                    continue
                # The image half of a joint [text, image] sequence: strided token rows.
                h = randn(b, n + 7, c, dtype=dtype, scale=3)
                check_norms(f"{tag} strided", h[:, 7:], y, gate, scale, shift)
                check_norms(f"{tag} misaligned", misaligned(x), y, gate, scale, shift)


# ----------------------------------------------------------------------------- qk

def check_qk(tag, x, w, cos, sin, x2=None, w2=None):
    expect = torch.ops.grat.qk_norm_rope(cpu(x), cpu(w), cpu(cos), cpu(sin), EPS, cpu(x2),
                                         cpu(w2))
    poison(tuple(expect.shape), x.dtype)
    got = torch.ops.grat.qk_norm_rope(x, w, cos, sin, EPS, x2, w2)
    report(f"qk_norm_rope {tag}", got, expect)


def qk_cases():
    dims = (64, 128) if SMALL else (8, 24, 64, 128, 256)
    shapes = ((1, 7, 13, 3),) if SMALL else ((1, 7, 13, 3), (2, 512, 300, 24), (1, 0, 37, 2))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for d in dims:
            for b, n1, n2, h in shapes:
                txt, img = randn(b, n1, h, d, dtype=dtype, scale=4), randn(b, n2, h, d, dtype=dtype)
                wt, wi = randn(d, dtype=dtype), randn(d, dtype=dtype)
                cos, sin = randn(n1 + n2, d), randn(n1 + n2, d)
                tag = f"{dtype} D={d} b={b} text={n1} image={n2} h={h}"
                check_qk(f"{tag} [text, image]", txt, wt, cos, sin, img, wi)
                check_qk(f"{tag} [image, text]", img, wi, cos, sin, txt, wt)
                check_qk(f"{tag} one stream", img, wi, cos[:n2], sin[:n2])
                if SMALL:
                    continue
                # q as a view of a fused qkv projection (strided tokens), and misaligned.
                qkv = randn(b, n2, 3 * h * d, dtype=dtype)
                q = qkv[:, :, h * d:2 * h * d].unflatten(-1, (h, d))
                check_qk(f"{tag} strided", txt, wt, cos, sin, q, wi)
                check_qk(f"{tag} misaligned", misaligned(txt), wt, cos, sin, img, wi)


# ----------------------------------------------------------------------------- gelu

def check_gelu(tag, x, prefix):
    expect = torch.ops.grat.gelu_tanh(cpu(x), cpu(prefix))
    poison(tuple(expect.shape), x.dtype)
    got = torch.ops.grat.gelu_tanh(x, prefix)
    report(f"gelu_tanh {tag}", got, expect)
    if prefix is not None:
        p = prefix.shape[2]
        report(f"gelu_tanh prefix copy {tag}", got[:, :, :p], prefix.cpu(), True)


def gelu_cases():
    widths = ((8, 32), (5, 12)) if SMALL else ((0, 64), (3072, 12288), (5, 12), (24, 100),
                                               (128, 512), (0, 3))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for p, c in widths:
            for b, n in ((1, 37),) if SMALL else ((1, 37), (2, 129)):
                x, pre = randn(b, n, c, dtype=dtype, scale=3), randn(b, n, p, dtype=dtype)
                tag = f"{dtype} {b}x{n} prefix {p} + {c}"
                check_gelu(tag, x, pre if p else None)
                if SMALL:
                    continue
                joint = randn(b, n + 5, p + 8, dtype=dtype)  # strided prefix rows (chunks)
                if p:
                    check_gelu(f"{tag} strided prefix", x, joint[:, 5:, 8:])
                check_gelu(f"{tag} misaligned", misaligned(x), pre if p else None)


# ----------------------------------------------------------------------------- timing

def ms(fn, reps=50):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def timings():
    """Flux 1024^2 (512 text + 4096 image tokens, 3072 channels, 24 x 128 heads), bf16."""
    bf = torch.bfloat16
    n, c = 4608, 3072
    x, y = randn(1, n, c, dtype=bf), randn(1, n, c, dtype=bf)
    mod = randn(1, 6 * c, dtype=bf)
    s, t, g = mod[:, :c], mod[:, c:2 * c], mod[:, 2 * c:3 * c]
    rows = [
        ("adaln", lambda: torch.ops.grat.adaln(x, s, t, EPS),
         lambda: F.layer_norm(x, (c,), eps=EPS) * (1 + s[:, None]) + t[:, None], 2),
        ("gated_residual_adaln", lambda: torch.ops.grat.gated_residual_adaln(x, y, g, s, t, EPS),
         lambda: F.layer_norm(x + g[:, None] * y, (c,), eps=EPS) * (1 + s[:, None]) + t[:, None],
         4),
    ]
    txt, img = randn(1, 512, 24, 128, dtype=bf), randn(1, 4096, 24, 128, dtype=bf)
    w = randn(128, dtype=bf)
    cos, sin = randn(n, 128), randn(n, 128)
    rows.append(("qk_norm_rope", lambda: torch.ops.grat.qk_norm_rope(txt, w, cos, sin, EPS, img, w),
                 lambda: torch.ops.grat.rope(torch.cat([F.rms_norm(txt, (128,), w, EPS),
                                                        F.rms_norm(img, (128,), w, EPS)], 1),
                                             cos, sin), 2))
    mlp, attn = randn(1, n, 4 * c, dtype=bf), randn(1, n, c, dtype=bf)
    rows.append(("gelu_tanh prefix", lambda: torch.ops.grat.gelu_tanh(mlp, attn),
                 lambda: torch.cat([attn, F.gelu(mlp, approximate="tanh")], 2), 10))
    for name, fused, unfused, passes in rows:  # passes: n x c bf16 tensors read + written
        f, u = ms(fused), ms(unfused)
        print(f"{name:22s} fused {f:.3f} ms ({passes * n * c * 2 / f / 1e6:.0f} GB/s), "
              f"ATen chain {u:.3f} ms")


norm_cases()
qk_cases()
gelu_cases()
if not SMALL:
    timings()
print("failures:", failures)
sys.exit(1 if failures else 0)

"""GPU test of grat::rope (CUDA) against its ATen reference on the CPU: bitwise equal.

Usage: python3 test_rope_gpu.py <libgrat_kernels.so>
Fresh random inputs per case (bf16 and fp16, head dims 64 and 128, contiguous and strided views,
a misaligned view that takes the ATen path); the output memory is poisoned (NaN) through the
caching allocator first. Also prints the kernel's bandwidth at a video-sized q. Exit 1 on failure.
"""
import sys

import torch

torch.ops.load_library(sys.argv[1])
failures = 0


def poison(like):
    torch.full(like.shape, float("nan"), dtype=like.dtype, device="cuda")  # freed at once


def check(name, x, cos, sin):
    global failures
    expect = torch.ops.grat.rope(x.cpu(), cos.cpu(), sin.cpu())
    poison(x)
    got = torch.ops.grat.rope(x, cos, sin).cpu()
    ok = got.shape == expect.shape and torch.equal(got, expect)
    failures += not ok
    diff = (got.float() - expect.float()).abs().max().item() if got.shape == expect.shape else -1
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |diff| {diff}")


g = torch.Generator(device="cuda").manual_seed(torch.seed() % 2**31)
for dtype in (torch.bfloat16, torch.float16):
    for b, n, h, d in ((1, 37, 3, 64), (2, 300, 24, 128), (3, 1000, 2, 64)):
        x = torch.randn(b, n, h, d, device="cuda", dtype=dtype, generator=g) * 3
        cos = torch.randn(n, d, device="cuda", generator=g)
        sin = torch.randn(n, d, device="cuda", generator=g)
        check(f"{dtype} {b}x{n}x{h}x{d}", x, cos, sin)
        wide = torch.randn(b, n, 2 * h * d, device="cuda", dtype=dtype, generator=g)
        view = wide[:, :, h * d:].unflatten(-1, (h, d))  # strided rows, as q of a fused qkv
        check(f"{dtype} strided {b}x{n}x{h}x{d}", view, cos, sin)
        odd = torch.randn(b * n * h * d + 1, device="cuda", dtype=dtype, generator=g)[1:]
        check(f"{dtype} misaligned", odd.view(b, n, h, d), cos, sin)

# Bandwidth at the 768x1280x125 video shape (123,136 tokens, 24 x 128).
x = torch.randn(1, 123136, 24, 128, device="cuda", dtype=torch.bfloat16)
cos, sin = torch.randn(123136, 128, device="cuda"), torch.randn(123136, 128, device="cuda")
import triton.testing  # noqa: E402
ms = triton.testing.do_bench(lambda: torch.ops.grat.rope(x, cos, sin), return_mode="median")
ref_ms = triton.testing.do_bench(
    lambda: (x.float() * cos[None, :, None] + x.float() * sin[None, :, None]).to(x.dtype),
    return_mode="median")
print(f"rope 123136x24x128 bf16: {ms:.3f} ms ({2 * x.numel() * 2 / ms / 1e6:.0f} GB/s); "
      f"a two-product float32 ATen rotation: {ref_ms:.3f} ms")
print("failures:", failures)
sys.exit(1 if failures else 0)

"""Full attention at a video shape through each path grat::attention can take: PyTorch SDPA
(padding keys dropped) and our own kernel (GRAT_FULL_KERNEL=own), all-valid and padded text.
usage: python3 bench/model/full_paths.py <libgrat_kernels.so> [t,h,w] [valid,...]"""
import json, os, sys
import torch
import triton.testing

torch.ops.load_library(sys.argv[1])
t, h, w = (int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "32,48,80").split(","))
valids = [int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "256,77").split(",")]
text, heads, dim = 256, 24, 128
n = t * h * w + text
g = torch.Generator(device="cuda").manual_seed(0)
q, k, v = (torch.randn(1, n, heads, dim, device="cuda", dtype=torch.bfloat16, generator=g)
           for _ in range(3))
rows = []
for path in ("sdpa", "own", "default"):
    os.environ["GRAT_FULL_KERNEL"] = path  # "default": the op's own choice
    for valid in valids:
        # grouped=False: full attention keeps the model's raster order (the models skip the
        # regroup for it)
        f = lambda: torch.ops.grat.attention(q, k, v, [t, h, w], [4, 8, 8], "full", 1, text,
                                             False, [valid], False, None)
        ms = triton.testing.do_bench(f, warmup=200, rep=2000, return_mode="median")
        flops = 4 * n * (n - text + valid) * heads * dim
        rows.append(dict(path=path, valid=valid, ms=ms, tflops=flops / ms / 1e9))
        print(f"{path:5s} valid {valid:4d}: {ms:8.2f} ms {flops / ms / 1e9:6.0f} TF/s", flush=True)
ref = None
os.environ["GRAT_FULL_KERNEL"] = "sdpa"
a = torch.ops.grat.attention(q, k, v, [t, h, w], [4, 8, 8], "full", 1, text, False, [77], False, None)
os.environ["GRAT_FULL_KERNEL"] = "own"
b = torch.ops.grat.attention(q, k, v, [t, h, w], [4, 8, 8], "full", 1, text, False, [77], False, None)
err = ((a.float() - b.float()).norm() / a.float().norm()).item()
print("own vs sdpa rel err", err)
json.dump(dict(rows=rows, grid=[t, h, w], gpu=torch.cuda.get_device_name(), own_vs_sdpa=err),
          open(os.environ.get("OUT", "/tmp") + "/full_paths.json", "w"), indent=1)

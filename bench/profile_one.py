"""Runs grat::attention once on one benchmark case (for ncu / compute-sanitizer).
Usage: python3 bench/profile_one.py <libgrat_kernels.so> <case> <pattern> [grouped=1]"""
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from attention_bench import CASES, D, H  # noqa: E402

torch.ops.load_library(sys.argv[1])
c, pat = CASES[sys.argv[2]], sys.argv[3]
grouped = len(sys.argv) < 5 or sys.argv[4] == "1"
n = c["text"] + torch.Size(c["grid"]).numel()
q, k, v = (torch.randn(1, n, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
for _ in range(2):
    o = torch.ops.grat.attention(q, k, v, c["grid"], c["group"], pat, 1, c["text"],
                                 c["text_first"], [], grouped)
torch.cuda.synchronize()
print("ok", o.shape, bool(torch.isfinite(o).all()))

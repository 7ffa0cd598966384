"""First half of the TorchScript round trip, and the op's Python surface.

Loads the grat op library, checks torch.ops.grat.* from eager Python (against SDPA with
the op's own mask, on the meta device, regroup round trip), scripts modules that call
torch.ops.grat.attention, checks scripted == eager, and saves modules plus inputs and
outputs for tests/kernels/test_torchscript.cpp to reproduce in C++.

usage: torchscript_export.py <libgrat_kernels.so> <out_dir>
"""
import os
import sys
from typing import List

import torch
import torch.nn.functional as F


class Attn(torch.nn.Module):
    valid: List[int]

    def __init__(self, grid: List[int], group: List[int], pattern: str, text: int,
                 text_first: bool, valid: List[int]):
        super().__init__()
        self.grid, self.group, self.pattern = grid, group, pattern
        self.text, self.text_first, self.valid = text, text_first, valid

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.ops.grat.attention(q, k, v, self.grid, self.group, self.pattern, 1,
                                        self.text, self.text_first, self.valid, False, None)


class Data(torch.nn.Module):
    """Holds named tensors so C++ can read them with Module::attr."""

    def __init__(self, tensors):
        super().__init__()
        for name, t in tensors.items():
            self.register_buffer(name, t)


CASES = {
    "b2d": dict(grid=[12, 10], group=[4, 4], pattern="B", text=7, text_first=True, valid=[5]),
    "x3d": dict(grid=[3, 6, 5], group=[2, 4, 2], pattern="X", text=6, text_first=False,
                valid=[]),
    "full2d": dict(grid=[5, 9], group=[2, 4], pattern="full", text=4, text_first=True,
                   valid=[4]),
}


def check(cond, msg):
    if not cond:
        raise SystemExit("FAIL: " + msg)


def main():
    lib, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.ops.load_library(lib)
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    tensors = {}
    for name, c in CASES.items():
        n = c["text"] + int(torch.tensor(c["grid"]).prod())
        q, k, v = (torch.randn(2, n, 3, 16) for _ in range(3))
        eager = Attn(**c)
        out_eager = eager(q, k, v)
        # Eager op vs SDPA driven by the op's own mask.
        valid = c["valid"][0] if c["valid"] else -1
        mask = torch.ops.grat.attention_mask(c["grid"], c["group"], c["pattern"], 1, c["text"],
                                             c["text_first"], valid, False)
        ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2), attn_mask=mask).transpose(1, 2)
        check(torch.allclose(out_eager, ref, atol=1e-5, rtol=1e-5), f"{name}: eager vs mask")
        scripted = torch.jit.script(eager)
        check(torch.equal(scripted(q, k, v), out_eager), f"{name}: scripted vs eager")
        scripted.save(os.path.join(out, f"attn_{name}.pt"))
        tensors.update({f"{name}_q": q, f"{name}_k": k, f"{name}_v": v, f"{name}_out": out_eager})
        # Meta device and regroup round trip from Python.
        meta = torch.ops.grat.attention(q.to("meta"), k.to("meta"), v.to("meta"), c["grid"],
                                        c["group"], c["pattern"], 1, c["text"], c["text_first"],
                                        c["valid"], False, None)
        check(meta.shape == q.shape and meta.device.type == "meta", f"{name}: meta")
        g = torch.ops.grat.regroup(q, c["grid"], c["group"], 1, c["text"], c["text_first"])
        back = torch.ops.grat.ungroup(g, c["grid"], c["group"], 1, c["text"], c["text_first"])
        check(torch.equal(back, q), f"{name}: regroup round trip")
    # Errors surface as RuntimeError naming the parameter.
    try:
        torch.ops.grat.attention(q, k, v, [3, 3], [4, 4], "B", 1, 0, True, [], False, None)
        check(False, "invalid layout accepted")
    except RuntimeError as e:
        check("group[0] = 4 is larger than grid[0] = 3" in str(e), f"error text: {e}")
    torch.jit.script(Data(tensors)).save(os.path.join(out, "data.pt"))
    print(f"ok: {len(CASES)} modules saved to {out}")


if __name__ == "__main__":
    main()

"""Inputs and expected outputs for tests/bundle/test_bundle_transformer.cpp: the bundle's
scripted transformer's weights copied into an eager FluxTransformer, run at several
resolutions (non-square, ragged groups, 1360x768's 85x48 token grid), batch sizes and
attention patterns. usage: make_transformer_cases.py <bundle> <out.pt>"""
import os
import sys

import torch

from models.flux import build_flux
from models.ops import load_grat_ops

# (grid_h, grid_w, batch, pattern, group_h, group_w)
CASES = [
    (8, 8, 1, "full", 4, 4),
    (6, 10, 2, "B", 4, 4),
    (5, 7, 2, "X", 2, 3),
    (48, 85, 1, "B", 16, 16),  # 1360x768
    (48, 85, 1, "X", 16, 16),
]


class Data(torch.nn.Module):
    def __init__(self, tensors):
        super().__init__()
        for name, t in tensors.items():
            self.register_buffer(name, t)


def main():
    bundle, out = sys.argv[1], sys.argv[2]
    load_grat_ops()
    scripted = torch.jit.load(os.path.join(bundle, "transformer.pt"))
    model = build_flux("flux-tiny")
    model.load_state_dict(dict(scripted.state_dict()), strict=True)
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    tensors = {}
    for i, (h, w, b, pattern, gh, gw) in enumerate(CASES):
        x = torch.randn(b, h * w, 64)
        ctx, pooled = torch.randn(b, 9, 32), torch.randn(b, 32)
        t, g = torch.rand(b), torch.full((b,), 3.5)
        with torch.no_grad():
            y = model(x, ctx, pooled, t, g, h, w, pattern, gh, gw, 1, None)
        meta = torch.tensor([h, w, gh, gw, ["full", "B", "X"].index(pattern)])
        tensors.update({f"c{i}_x": x, f"c{i}_ctx": ctx, f"c{i}_pooled": pooled, f"c{i}_t": t,
                        f"c{i}_g": g, f"c{i}_y": y, f"c{i}_meta": meta})
    torch.jit.script(Data(tensors)).save(out)
    print(f"{len(CASES)} cases -> {out}")


if __name__ == "__main__":
    main()

"""How much each kind of caption word moves the model's velocity along a sampling trajectory.

The checker's accuracy stays at 0 until a model draws whole scenes right, so it says nothing
about a run that is on its way. This measures the way there: for captions that differ in one
word (the shape, the colour, the position, the count, the background), the velocity for each
caption is taken at the states of the guided trajectory of the first caption, and the spread
is reported relative to the caption's whole effect |v_cond - v_uncond|, per noise band:

    high  sigma >= 0.7   (layout: where, how many, what colour)
    mid   0.3 <= sigma < 0.7
    low   sigma < 0.3    (outlines)

A word the model ignores scores near 0; one that matters as much as the caption, near 1.

    python -m models.train.sensitivity --checkpoint models/train/weights [--size 256]
"""
import argparse
import json
import sys
from typing import Dict, List, Sequence

import numpy as np
import torch

from models.train import flow, world

# kind -> (caption template, the words swapped into it); the first caption's trajectory
SWAPS: Dict[str, tuple] = {
    "shape": ("a large red {} in the center", list(world.SHAPES)),
    "colour": ("a large {} circle in the center", list(world.COLOURS)),
    "position": ("a red circle {}",
                 [world.POSITIONS[k][0] for k in ("top left", "center", "bottom right",
                                                  "top right", "bottom left")]),
    "count": ("{} red circles", [world.NUMBERS[n] for n in (2, 3, 4)]),
    "background": ("a large red circle on a {} background", list(world.BACKGROUNDS)),
}
BANDS = (("high", 0.7, 1.01), ("mid", 0.3, 0.7), ("low", 0.0, 0.3))


@torch.no_grad()
def sensitivity(flux, t5, clip, tokenizer, device: str = "cpu", size: int = 256,
                steps: int = 28, guidance: float = 4.0, seeds: Sequence[int] = (0,),
                amp: bool = False) -> Dict[str, Dict[str, float]]:
    """{kind: {band: mean spread / caption effect}} for the eager training modules."""
    g = size // 16
    c = flux.in_channels // 4
    sigmas = flow.flux_sigmas(steps, flow.flux_mu(g * g))
    out: Dict[str, Dict[str, float]] = {}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp), flow.training_attention():
        for kind, (template, words) in SWAPS.items():
            prompts = [template.format(w) for w in words] + [""]
            ids5, idsc = tokenizer.batch(prompts)
            seq = t5(ids5.to(device), None)
            pooled = clip(idsc.to(device), None)[1]
            n = len(prompts)
            ratios: Dict[str, List[float]] = {b[0]: [] for b in BANDS}
            for seed in seeds:
                noise = torch.randn(1, c, 2 * g, 2 * g,
                                    generator=torch.Generator().manual_seed(int(seed)))
                x = flow.pack(noise).to(device)
                for i in range(steps):
                    t = torch.full((n,), sigmas[i], device=device)
                    v = flux(x.expand(n, -1, -1), seq, pooled, t, None, g, g).float()
                    effect = (v[0] - v[-1]).norm()
                    spread = (v[1:-1] - v[:1]).flatten(1).norm(dim=1).mean()
                    band = next(b for b, lo, hi in BANDS if lo <= sigmas[i] < hi)
                    ratios[band].append(float(spread / effect.clamp_min(1e-6)))
                    guided = v[-1] + guidance * (v[0] - v[-1])
                    x = x + (sigmas[i + 1] - sigmas[i]) * guided[None]
            out[kind] = {b: float(np.mean(r)) if r else float("nan") for b, r in ratios.items()}
    return out


def table(result: Dict[str, Dict[str, float]]) -> str:
    lines = [f"{'word':<11}" + "".join(f"{b:>8}" for b, _, _ in BANDS)]
    for kind, bands in result.items():
        lines.append(f"{kind:<11}" + "".join(f"{bands[b]:8.3f}" for b, _, _ in BANDS))
    return "\n".join(lines)


def main(argv=None) -> int:
    from models.train import checkpoint, configs, data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a models/train checkpoint folder")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON here")
    a = ap.parse_args(argv)
    m = checkpoint.load_modules(a.checkpoint)
    tok = data.PromptTokenizer(a.checkpoint, configs.T5_MAX_LENGTH, configs.CLIP_MAX_LENGTH)
    res = sensitivity(m["transformer"], m["t5"], m["clip"], tok, size=a.size,
                      seeds=range(a.seeds))
    print(table(res))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"checkpoint": a.checkpoint, "size": a.size, "seeds": a.seeds,
                       "sensitivity": res}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A CPU-sized experiment on the flux-shapes recipe: how fast do position words get learned?

The H200 checkpoints read colour words and ignore position words
(models/train/sensitivity.py). This reproduces that in minutes on a CPU and tries the recipe
knobs against it. The world is built in token space, with no autoencoder:
  - an 8x8 grid of 64-dim tokens (128^2 pixels' worth);
  - a background vector, plus a 2x2-token object of one of six colour vectors;
  - half the captions put the object in one of the grammar's nine position cells
    ("a red circle in the top left"); the other half leave it anywhere ("a red circle").
The modules are the mini recipe's (configs.mini). Training is rectified flow as in
train.py: caption dropout 10%, AdamW, warm-up 100 steps, batch 32. Every quarter of the
run, the words' sensitivity is recorded.

    python -m models.train.toy_position --name base --steps 800
    python -m models.train.toy_position --name boost --steps 800 --sigma-mu-boost 0.7
"""
import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
import torch

from models.train import configs, data, flow, graphs, sensitivity, world

GRID = 8


class TokenWorld:
    """Captioned token grids: [N, GRID*GRID, 64] clean latents and their captions."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.colours = {c: torch.tensor(rng.normal(size=64), dtype=torch.float32)
                        for c in world.COLOURS}
        self.background = torch.tensor(rng.normal(size=64) * 0.5, dtype=torch.float32)
        self.cells = [v for v in world.POSITIONS.values()]

    def sample(self, n: int, g: torch.Generator,
               grid: int = GRID) -> Tuple[List[str], torch.Tensor]:
        """On a grid x grid canvas; the object's side is a quarter of the canvas."""
        names = list(self.colours)
        side = grid // 4
        caps, xs = [], []
        for _ in range(n):
            colour = names[int(torch.randint(len(names), (1,), generator=g))]
            x = self.background.repeat(grid, grid, 1)
            if float(torch.rand(1, generator=g)) < 0.5:
                phrase, row, col = self.cells[int(torch.randint(len(self.cells), (1,),
                                                                generator=g))]
                y0 = int(round(world.CELL_CENTRES[row] * grid - side / 2))
                x0 = int(round(world.CELL_CENTRES[col] * grid - side / 2))
                caps.append(f"a {colour} circle {phrase}")
            else:
                y0, x0 = (int(v) for v in torch.randint(0, grid - side + 1, (2,), generator=g))
                caps.append(f"a {colour} circle")
            y0, x0 = min(max(y0, 0), grid - side), min(max(x0, 0), grid - side)
            x[y0:y0 + side, x0:x0 + side] = self.colours[colour]
            xs.append(x.reshape(grid * grid, 64))
        return caps, torch.stack(xs)


def run(steps: int, lr: float, text_lr_scale: float, sigma_mu_boost: float, seed: int,
        evals: int = 4, batch: int = 32, log=print, grids=(GRID,)) -> List[Dict]:
    """Steps cycle through `grids` (the real recipe mixes resolutions); the sensitivity is
    measured on the first grid."""
    from models.clip import CLIPTextEncoder
    from models.flux import FluxTransformer
    from models.t5 import T5Encoder
    from models.train.tokenizers import write_grammar_tokenizers
    from models.train.train import zero_init_

    tok_dir = tempfile.mkdtemp(prefix="toy_position_tok_")
    write_grammar_tokenizers(tok_dir)
    tok = data.PromptTokenizer(tok_dir, configs.T5_MAX_LENGTH, configs.CLIP_MAX_LENGTH)
    cfg = dataclasses.replace(configs.mini().with_vocab(*tok.vocab()), lr=lr,
                              text_lr_scale=text_lr_scale, sigma_mu_boost=sigma_mu_boost)
    torch.manual_seed(seed)
    flux = FluxTransformer(cfg.flux)
    zero_init_(flux)
    t5, clip = T5Encoder(cfg.t5), CLIPTextEncoder(cfg.clip)
    models = (flux, t5, clip)
    params = [p for m in models for p in m.parameters()]
    opt = graphs.make_optimizer(cfg, params, "cpu", False,
                                text_params=[p for m in (t5, clip) for p in m.parameters()])
    toy = TokenWorld(seed)
    g = torch.Generator().manual_seed(1 + 100 * seed)
    t0, history = time.time(), []
    every = max(1, steps // evals)
    for step in range(steps):
        graphs.set_lr(opt, lr * min(1.0, (step + 1) / 100))
        grid = grids[step % len(grids)]
        caps, x0 = toy.sample(batch, g, grid)
        caps = [c if float(torch.rand(1, generator=g)) >= cfg.caption_dropout else ""
                for c in caps]
        ids5, idsc = tok.batch(caps)
        s = flow.train_sigmas(batch, grid * grid, g, "cpu", sigma_mu_boost).view(-1, 1, 1)
        noise = torch.randn(x0.shape, generator=g)
        with flow.training_attention():
            v = flux((1 - s) * x0 + s * noise, t5(ids5, None), clip(idsc, None)[1],
                     s.view(-1), None, grid, grid)
        loss = ((v.float() - (noise - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if (step + 1) % every == 0:
            for m in models:
                m.eval()
            words = sensitivity.sensitivity(flux, t5, clip, tok, size=grids[0] * 16, steps=16,
                                            seeds=(0, 1))
            for m in models:
                m.train()
            row = {"step": step + 1, "s": round(time.time() - t0, 1),
                   "loss": round(float(loss.detach()), 4),
                   "position": words["position"], "colour": words["colour"]}
            history.append(row)
            log(f"step {row['step']} loss {row['loss']:.4f} position "
                + "/".join(f"{words['position'][b]:.2f}" for b in ("high", "mid", "low"))
                + " colour "
                + "/".join(f"{words['colour'][b]:.2f}" for b in ("high", "mid", "low")))
    return history


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--text-lr-scale", type=float, default=1.0)
    ap.add_argument("--sigma-mu-boost", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grids", default=str(GRID),
                    help="token grids the steps cycle through, e.g. 8,16 (sensitivity: the first)")
    ap.add_argument("--out", default=None, help="JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    hist = run(a.steps, a.lr, a.text_lr_scale, a.sigma_mu_boost, a.seed,
               log=lambda m: print(f"{a.name}: {m}", flush=True),
               grids=tuple(int(v) for v in a.grids.split(",")))
    if a.out:
        from models.train.train import _commit

        with open(a.out, "w") as f:
            json.dump({"experiment": "toy_position", "name": a.name, "args": vars(a),
                       "command": "python -m models.train.toy_position " + " ".join(
                           sys.argv[1:] if argv is None else argv),
                       "commit": _commit(), "device": "cpu", "history": hist}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

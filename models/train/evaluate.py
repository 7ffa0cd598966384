"""Score a bundle of the synthetic world with the scene checker: generate held-out captions
through the bundle's TorchScript files (the engine's recipe in Python, any attention mode)
and report the checker's accuracy, per kind of caption and per failed clause.

    python -m models.train.evaluate --bundle bundles/flux-shapes --captions 24 --size 256
    python -m models.train.evaluate --bundle b --pattern B --full-first 2 --images /tmp/imgs

Captions are those of the evaluation seeds (models/train/data.py SEED_BASE["eval"] + i, never
trained on); image i is generated with seed i. Steps, guidance and the GRAT group come from
model.yaml unless given. Prints one line per caption (PASS / FAIL and the failed clauses) and
writes --out JSON when asked.
"""
import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch

from models.train import checker, data, flow, world


def caption_kind(spec: world.Spec) -> str:
    if spec.relations:
        return "relation"
    if len(spec.groups) > 1:
        return "and"
    g = spec.groups[0]
    return "count" if g.count > 1 else ("position" if g.position else "single")


def load_bundle(folder: str):
    from models import bundle
    from models.ops import load_grat_ops

    load_grat_ops()
    m = bundle.load_manifest(folder)
    mods = {role: torch.jit.load(os.path.join(folder, m["files"][role])).eval()
            for role in ("transformer", "t5", "clip", "vae_decoder")}
    tok = data.PromptTokenizer(folder, m["text"]["t5_max_length"], m["text"]["clip_max_length"])
    return m, mods, tok


def evaluate(folder: str, captions: int, width: int, height: int, steps: Optional[int] = None,
             guidance: Optional[float] = None, pattern: str = "full",
             full_first: int = 0, batch: int = 8, images: Optional[str] = None,
             device: str = "cpu", first: int = 0) -> Dict:
    m, mods, tok = load_bundle(folder)
    if not m["defaults"]["true_cfg"]:
        raise SystemExit("evaluate: the bundle does not use true CFG (not a flux-shapes bundle)")
    steps = steps or m["defaults"]["steps"]
    guidance = m["defaults"]["guidance"] if guidance is None else guidance
    group = m["grat"]["group"]
    mods = {k: v.to(device) for k, v in mods.items()}
    scenes = [world.make_scene(s) for s in data.seeds("eval", first + captions)[first:]]
    rows: List[Dict] = []
    t0 = time.time()
    for i in range(0, len(scenes), batch):
        part = scenes[i:i + batch]
        imgs = flow.generate(mods["transformer"], mods["t5"], mods["clip"], mods["vae_decoder"],
                             tok, [s.caption for s in part], [first + i + k for k in
                                                              range(len(part))],
                             width, height, steps, guidance, device, False, "", pattern, group,
                             m["grat"]["radius"], full_first)
        for k, (s, img) in enumerate(zip(part, imgs)):
            v = checker.check(img, s.caption)
            idx = first + i + k
            if images:
                from PIL import Image

                os.makedirs(images, exist_ok=True)
                Image.fromarray(img).save(os.path.join(images, f"{idx:04d}_{pattern}.png"))
            rows.append({"index": idx, "seed": idx, "caption": s.caption,
                         "kind": caption_kind(s.spec), "ok": v.ok, "failed": v.reasons})
            print(f"{idx:4d} {'PASS' if v.ok else 'FAIL'} {s.caption}"
                  + ("" if v.ok else "  <- " + "; ".join(v.reasons)), flush=True)
    kinds: Dict[str, List[bool]] = {}
    clauses: Dict[str, int] = {}
    for r in rows:
        kinds.setdefault(r["kind"], []).append(r["ok"])
        for reason in r["failed"]:
            kind = reason.split(":")[0]
            clauses[kind] = clauses.get(kind, 0) + 1
    acc = float(np.mean([r["ok"] for r in rows])) if rows else 0.0
    result = {"bundle": os.path.abspath(folder), "size": [width, height], "steps": steps,
              "guidance": guidance, "pattern": pattern, "group": group,
              "full_first": full_first, "captions": len(rows), "accuracy": acc,
              "by_kind": {k: {"n": len(v), "accuracy": float(np.mean(v))}
                          for k, v in sorted(kinds.items())},
              "failed_clauses": clauses, "seconds": time.time() - t0, "rows": rows}
    print(f"accuracy {acc:.3f} over {len(rows)} captions at {width}x{height} ({pattern}"
          f"{f', full first {full_first}' if full_first else ''}); by kind "
          + ", ".join(f"{k} {v['accuracy']:.2f} (n={v['n']})"
                      for k, v in result["by_kind"].items()))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--captions", type=int, default=24)
    ap.add_argument("--first", type=int, default=0, help="first evaluation caption index")
    ap.add_argument("--size", default="256", help="N or WxH (default 256)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--pattern", default="full", choices=["full", "B", "X"])
    ap.add_argument("--full-first", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", default=None, help="save every image here")
    ap.add_argument("--out", default=None, help="write the result JSON here")
    a = ap.parse_args(argv)
    w, _, h = a.size.partition("x")
    res = evaluate(a.bundle, a.captions, int(w), int(h or w), a.steps, a.guidance, a.pattern,
                   a.full_first, a.batch, a.images, a.device, a.first)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

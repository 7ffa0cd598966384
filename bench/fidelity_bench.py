"""Fidelity benchmark: does GRAT keep what full attention draws?

Starts grat_server with a bundle (the trained default model: models/train), generates a fixed
set of the synthetic world's captions x seeds with each attention mode, scores every image with
the scene checker (models/train/checker.py) and compares each mode's image with the
full-attention image of the same caption, seed and size (PSNR, SSIM).

    python3 bench/fidelity_bench.py --bundle bundles/flux-shapes --device cuda:0 \
        --sizes 512,1024 --captions 200 --modes full,B,X,first4 --out bench/results/F.json

Modes: full, B, X, auto, and firstK (GRAT-B with full attention for the first K steps).
Prints a table per size and mode: checker accuracy, PSNR / SSIM against full (mean, min),
and which clause kinds fail where full attention passed; then a table of the pass rate of
each clause kind (count, size, position, relation, nothing else, background) and of all
clauses. Writes JSON (GPU, command, commit, every image's verdict and clause counts) and, with
--figure, a side-by-side PNG (full | B | X ... for a few captions).
--min-accuracy A: exit 1 when full attention's accuracy at any size is below A.
--min-clause-rate KIND=R[,KIND=R...]: exit 1 when full attention's pass rate of that clause
kind (`all`: every clause) at any size is below R; a model far from whole-caption accuracy
still shows here whether it draws the right backgrounds, shapes, places.
"""
import argparse
import concurrent.futures
import io
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, Tuple

import numpy as np
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
import generate as client  # noqa: E402
from models.train import checker, world  # noqa: E402
from provenance import commit_of  # noqa: E402

CAPTION_SEED0 = 900_000  # the benchmark's scenes: world.make_scene(CAPTION_SEED0 + i)
# The checker's clause kinds, in the order of its verdicts (the table's columns).
CLAUSE_KINDS = ("count", "size", "position", "relation", "nothing else", "background")


def noise_seed(caption_index: int, k: int) -> int:
    """The request seed of a caption's k-th sample: every caption gets its own noise."""
    return 1000 * caption_index + k


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _gauss_blur(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian, 'valid' region only (the kernel is symmetric: correlation is
    convolution)."""
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    x = np.lib.stride_tricks.sliding_window_view(x, k.size, axis=1) @ k
    return np.lib.stride_tricks.sliding_window_view(x, k.size, axis=0) @ k


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) of the luma, mean over the
    image."""
    w = np.array([0.299, 0.587, 0.114])
    x, y = a.astype(np.float64) @ w, b.astype(np.float64) @ w
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gauss_blur(x), _gauss_blur(y)
    sxx = _gauss_blur(x * x) - mx * mx
    syy = _gauss_blur(y * y) - my * my
    sxy = _gauss_blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


_SCORED: Dict = {}   # what the forked scoring workers read (images and scenes), not pickled


def _score_one(case):
    images, scenes = _SCORED["images"], _SCORED["scenes"]
    img = images[case]
    verdict = checker.check(img, scenes[case[0]].spec)
    if case[3] == "full":
        return case, verdict, None
    ref = images[case[:3] + ("full",)]
    return case, verdict, (psnr(img, ref), ssim(img, ref))


def score(images: Dict, scenes) -> Tuple[Dict, Dict]:
    """The checker's verdict of every image and (PSNR, SSIM) against full attention of every
    other mode's image, in forked worker processes."""
    _SCORED.update(images=images, scenes=scenes)
    try:
        with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
            done = pool.map(_score_one, list(images), chunksize=4)
    finally:
        _SCORED.clear()
    return ({c: v for c, v, _ in done}, {c: q for c, _, q in done if q is not None})


def clause_counts(verdict) -> Dict[str, list]:
    """{kind: [passed, total]} of a verdict's clauses."""
    out: Dict[str, list] = {}
    for c in verdict.clauses:
        pt = out.setdefault(c.kind, [0, 0])
        pt[0] += bool(c.ok)
        pt[1] += 1
    return out


def parse_clause_floors(text: str) -> Dict[str, float]:
    """--min-clause-rate "background=0.6,all=0.4" -> {kind: fraction}."""
    floors = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, value = item.rpartition("=")
        kind = kind.strip()
        try:
            if kind not in CLAUSE_KINDS + ("all",):
                raise ValueError(kind)
            floors[kind] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not KIND=FRACTION with KIND one of "
                f"{', '.join(CLAUSE_KINDS + ('all',))}") from None
    return floors


def attention(pb2, mode: str):
    """AttentionSettings of a mode name: full, B, X, auto, firstK."""
    a = pb2.AttentionSettings()
    if mode.startswith("first"):
        a.mode = pb2.ATTENTION_MODE_B
        a.full_steps = int(mode[len("first"):])
        return a
    a.mode = {"full": pb2.ATTENTION_MODE_FULL, "B": pb2.ATTENTION_MODE_B,
              "X": pb2.ATTENTION_MODE_X, "auto": pb2.ATTENTION_MODE_AUTO}[mode]
    a.full_steps = 0
    return a


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """grat_server on loopback serving one bundle as model "fid"."""

    def __init__(self, binary: str, bundle: str, device: str, max_batch: int, log_path: str):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="grat-fidelity-")
        config = os.path.join(self.dir, "config.yaml")
        with open(config, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.port}\nmetrics_listen: 127.0.0.1:{free_port()}\n"
                    f"models:\n  - name: fid\n    bundle: {os.path.abspath(bundle)}\n"
                    f"    devices: [{device}]\n    max_batch: {max_batch}\n"
                    f"    max_queue: 100000\n    max_batch_delay_ms: 20\n")
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([binary, "--config", config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.address = f"127.0.0.1:{self.port}"

    def wait_ready(self, stub, pb2, timeout_s: float = 600):
        t0 = time.time()
        while time.time() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"grat_server exited ({self.proc.returncode}); "
                                   f"see {self.log.name}")
            try:
                stub.ListModels(pb2.ListModelsRequest(), timeout=2)
                return
            except Exception:  # not up yet
                time.sleep(0.5)
        raise RuntimeError(f"grat_server not ready after {timeout_s} s; see {self.log.name}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def gpu_name(device: str) -> str:
    if not device.startswith("cuda"):
        return "cpu"
    try:
        idx = device.split(":")[1] if ":" in device else "0"
        out = subprocess.run(["nvidia-smi", "-i", idx, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "unknown GPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"


def figure(path: str, rows, modes, side: int = 256):
    """A grid: one row per (caption, size), one column per mode, the caption above each row."""
    from PIL import ImageDraw
    label_h = 18
    W = side * len(modes)
    canvas = Image.new("RGB", (W, (side + label_h) * len(rows) + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    for c, m in enumerate(modes):
        draw.text((c * side + 4, 2), m, fill="black")
    for r, (caption, images, verdicts) in enumerate(rows):
        y = label_h + r * (side + label_h)
        draw.text((4, y + 2), caption[:110], fill="black")
        for c, m in enumerate(modes):
            img = Image.fromarray(images[m]).resize((side, side), Image.BOX)
            canvas.paste(img, (c * side, y + label_h))
            mark = "ok" if verdicts[m] else "FAIL"
            draw.text((c * side + 4, y + label_h + 4), mark, fill="black" if verdicts[m] else "red")
    canvas.save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=os.path.join(REPO, "bundles", "flux-shapes"))
    ap.add_argument("--server-bin", default=os.path.join(REPO, "build", "server", "grat_server"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="256")
    ap.add_argument("--captions", type=int, default=24)
    ap.add_argument("--seeds", type=int, default=1, help="seeds per caption")
    ap.add_argument("--modes", default="full,B,X")
    ap.add_argument("--steps", type=int, default=0, help="0: the model's default")
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8, help="requests in flight")
    ap.add_argument("--out", required=True, help="JSON path")
    ap.add_argument("--figure", help="side-by-side PNG path")
    ap.add_argument("--figure-rows", type=int, default=6)
    ap.add_argument("--images", help="folder to keep every generated PNG in")
    ap.add_argument("--commit", default="")
    ap.add_argument("--min-accuracy", type=float, default=0.0)
    ap.add_argument("--min-clause-rate", type=parse_clause_floors, default={},
                    metavar="KIND=FRACTION[,KIND=FRACTION...]",
                    help="floors of full attention's clause pass rates; KIND 'all': every clause")
    args = ap.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    if "full" not in modes:
        modes.insert(0, "full")  # the reference of PSNR / SSIM
    scenes = [world.make_scene(CAPTION_SEED0 + i) for i in range(args.captions)]
    cases = [(ci, seed, size, mode) for size in sizes for ci in range(len(scenes))
             for seed in range(args.seeds) for mode in modes]

    pb2, pb2_grpc = client.load_stubs(os.path.join(REPO, "proto"))
    log_path = os.path.splitext(args.out)[0] + "_server.log"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    server = Server(args.server_bin, args.bundle, args.device, args.max_batch, log_path)
    images = {}
    t0 = time.time()
    chan = None
    try:
        chan = client.channel(server.address)
        stub = pb2_grpc.GenerationStub(chan)
        server.wait_ready(stub, pb2)
        load_s = time.time() - t0

        def run(case):
            ci, seed, size, mode = case
            req = pb2.GenerateRequest(model="fid", prompt=scenes[ci].caption, width=size,
                                      height=size, steps=args.steps, seed=noise_seed(ci, seed),
                                      attention=attention(pb2, mode))
            data, _, fin = client.generate(stub, req, timeout=3600)
            return case, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), fin.attention

        t1 = time.time()
        ran = {}
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            for case, img, ran_attention in pool.map(run, cases):
                images[case] = img
                ran[case[3]] = ran_attention
        gen_s = time.time() - t1
    finally:
        if chan is not None:
            chan.close()   # before the scoring forks: no gRPC threads across fork()
        server.stop()

    if args.images:
        os.makedirs(args.images, exist_ok=True)
        for (ci, seed, size, mode), img in images.items():
            name = f"{size}_{ci:04d}_{seed}_{mode}.png"
            Image.fromarray(img).save(os.path.join(args.images, name))

    # Each image is checked once (the full-attention verdicts serve every mode and the
    # figure), on every core: at 1024^2 a check and an SSIM take ~0.1 s each.
    verdicts, quality = score(images, scenes)
    records, summary = [], {}
    for size in sizes:
        for mode in modes:
            ok, ps, ss, lost = 0, [], [], {}
            n = 0
            passed: Dict[str, list] = {}   # {kind: [passed, total]} over this row's images
            for ci, scene in enumerate(scenes):
                for seed in range(args.seeds):
                    v = verdicts[(ci, seed, size, mode)]
                    full_ok = verdicts[(ci, seed, size, "full")].ok
                    rec = {"caption": scene.caption, "scene_seed": scene.seed,
                           "seed": noise_seed(ci, seed),
                           "size": size, "mode": mode, "ok": v.ok, "reasons": v.reasons,
                           "clauses": clause_counts(v)}
                    for kind, (p, t) in rec["clauses"].items():
                        pt = passed.setdefault(kind, [0, 0])
                        pt[0] += p
                        pt[1] += t
                    if mode != "full":
                        rec["psnr_db"], rec["ssim"] = quality[(ci, seed, size, mode)]
                        ps.append(rec["psnr_db"])
                        ss.append(rec["ssim"])
                        if full_ok and not v.ok:  # where this mode lost what full drew
                            for reason in v.reasons:
                                kind = reason.split(":")[0]
                                lost[kind] = lost.get(kind, 0) + 1
                    records.append(rec)
                    ok += v.ok
                    n += 1
            finite = [p for p in ps if np.isfinite(p)]
            n_clauses = sum(t for _, t in passed.values())
            summary[f"{size}/{mode}"] = {
                "size": size, "mode": mode, "attention": ran.get(mode, ""), "n": n,
                "accuracy": ok / n,
                "psnr_mean_db": float(np.mean(finite)) if finite else None,
                "psnr_min_db": float(np.min(finite)) if finite else None,
                "identical_to_full": sum(1 for p in ps if not np.isfinite(p)),
                "ssim_mean": float(np.mean(ss)) if ss else None,
                "ssim_min": float(np.min(ss)) if ss else None,
                "lost_where_full_passed": lost,
                # A kind no caption asked for has no rate (absent), not 0 or 1.
                "clause_pass": {k: passed[k][0] / passed[k][1] for k in CLAUSE_KINDS
                                if k in passed},
                "clauses_passed": (sum(p for p, _ in passed.values()) / n_clauses
                                   if n_clauses else None),
            }

    print(f"{'size':>5} {'mode':8} {'n':>4} {'accuracy':>8} {'PSNR dB':>8} {'min':>6} "
          f"{'SSIM':>6} {'min':>6}  lost where full passed")
    for s in summary.values():
        f = lambda x, w, p: f"{x:{w}.{p}f}" if x is not None else f"{'-':>{w}}"  # noqa: E731
        print(f"{s['size']:>5} {s['mode']:8} {s['n']:>4} {100 * s['accuracy']:7.1f}% "
              f"{f(s['psnr_mean_db'], 8, 2)} {f(s['psnr_min_db'], 6, 1)} {f(s['ssim_mean'], 6, 3)} "
              f"{f(s['ssim_min'], 6, 3)}  {s['lost_where_full_passed'] or ''}")

    # Clause pass rates: the signal of a model that draws most of a caption but seldom all.
    print(f"\n{'size':>5} {'mode':8} " + " ".join(f"{k[:12]:>12}" for k in CLAUSE_KINDS)
          + f" {'all':>6}")
    for s in summary.values():
        cells = [f"{100 * s['clause_pass'][k]:11.1f}%" if k in s["clause_pass"]
                 else f"{'-':>12}" for k in CLAUSE_KINDS]
        overall = s["clauses_passed"]
        print(f"{s['size']:>5} {s['mode']:8} " + " ".join(cells)
              + (f" {100 * overall:5.1f}%" if overall is not None else f" {'-':>6}"))

    result = {
        "benchmark": "fidelity", "gpu": gpu_name(args.device), "device": args.device,
        "command": "python3 bench/fidelity_bench.py " + " ".join(argv or sys.argv[1:]),
        "commit": args.commit or commit_of(), "bundle": os.path.abspath(args.bundle),
        "captions": len(scenes), "seeds": args.seeds, "sizes": sizes, "modes": modes,
        "server_load_s": load_s, "generate_s": gen_s, "images": len(images),
        "summary": list(summary.values()), "records": records,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out} ({len(images)} images in {gen_s:.1f} s)")

    if args.figure:
        rows = []
        for ci in range(min(args.figure_rows, len(scenes))):
            size = sizes[-1]
            imgs = {m: images[(ci, 0, size, m)] for m in modes}
            marks = {m: verdicts[(ci, 0, size, m)].ok for m in modes}
            rows.append((f"{size}^2: {scenes[ci].caption}", imgs, marks))
        figure(args.figure, rows, modes)
        print(f"wrote {args.figure}")

    failed = False
    worst = min(summary[f"{s}/full"]["accuracy"] for s in sizes)
    if worst < args.min_accuracy:
        print(f"FAIL: full attention's checker accuracy {100 * worst:.1f}% is below "
              f"--min-accuracy {100 * args.min_accuracy:.1f}%")
        failed = True
    for kind, floor in args.min_clause_rate.items():
        for size in sizes:
            row = summary[f"{size}/full"]
            rate = row["clauses_passed"] if kind == "all" else row["clause_pass"].get(kind)
            if rate is None:   # no caption asked for it: a floor that measures nothing fails
                print(f"FAIL: no '{kind}' clauses at {size}^2 to hold to --min-clause-rate "
                      f"{kind}={floor:g}")
                failed = True
            elif rate < floor:
                print(f"FAIL: full attention's '{kind}' clause pass rate at {size}^2 "
                      f"{100 * rate:.1f}% is below --min-clause-rate {kind}={floor:g} "
                      f"({100 * floor:.1f}%)")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

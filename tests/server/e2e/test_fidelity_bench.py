"""bench/fidelity_bench.py's CPU subset, through the real server with the tiny bundle: every
size x mode is generated and scored, GRAT against full attention gives finite PSNR / SSIM,
the figure is written, and --min-accuracy fails a model that does not draw its captions
(the tiny bundle has random weights, so the checker passes none)."""
import json
import os
import subprocess
import sys

import harness

BENCH = os.path.join(harness.REPO, "bench", "fidelity_bench.py")


def bench(tmp, *args):
    out = os.path.join(tmp, "fid.json")
    cmd = [sys.executable, BENCH, "--bundle", harness.TINY_BUNDLE, "--server-bin",
           harness.SERVER_BIN, "--steps", "4", "--out", out, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return p, out


def test_every_size_and_mode_is_scored_against_full_attention(tmp_path):
    fig = str(tmp_path / "fid.png")
    p, out = bench(str(tmp_path), "--sizes", "256,1024", "--captions", "3",
                   "--modes", "full,B,first2", "--figure", fig)
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.load(open(out))
    assert d["images"] == 2 * 3 * 3 and len(d["records"]) == d["images"]
    rows = {(r["size"], r["mode"]): r for r in d["summary"]}
    assert set(rows) == {(s, m) for s in (256, 1024) for m in ("full", "B", "first2")}
    for (size, mode), r in rows.items():
        assert r["n"] == 3 and 0.0 <= r["accuracy"] <= 1.0
        if mode == "full":
            assert r["psnr_mean_db"] is None
        else:   # near full attention on this model (measured ~50 dB), never garbage
            assert 25.0 < r["psnr_min_db"] <= r["psnr_mean_db"], (size, mode, r)
            assert 0.9 < r["ssim_min"] <= 1.0, (size, mode, r)
    assert all(r["reasons"] or r["ok"] for r in d["records"])   # a verdict with its reasons
    assert os.path.getsize(fig) > 10_000


def test_min_accuracy_fails_a_model_that_draws_noise(tmp_path):
    p, out = bench(str(tmp_path), "--sizes", "256", "--captions", "2", "--modes", "full",
                   "--min-accuracy", "0.5")
    assert p.returncode == 1, p.stdout + p.stderr
    assert json.load(open(out))["summary"][0]["accuracy"] < 0.5

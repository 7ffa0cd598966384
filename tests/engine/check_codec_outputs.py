"""Decodes what grat_engine_core_tests encoded, with Pillow and ffprobe, and checks size,
frame count and pixels against the raw frames written beside each file."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

d = sys.argv[1]
meta = json.load(open(os.path.join(d, "manifest.json")))
checked = 0
for item in meta:
    path = os.path.join(d, item["file"])
    raw = np.fromfile(os.path.join(d, item["raw"]), dtype=np.uint8)
    w, h = item["width"], item["height"]
    if item["format"] in ("png", "webp"):
        img = Image.open(path)
        img.load()
        assert img.format == item["format"].upper(), (img.format, item)
        assert img.size == (w, h), (img.size, item)
        px = np.asarray(img.convert("RGB")).reshape(-1).astype(np.int16)
        diff = np.abs(px - raw.astype(np.int16))
        if item["lossless"]:
            assert diff.max() == 0, f"{item['file']}: lossless output differs"
        else:
            assert diff.mean() < 8, f"{item['file']}: mean abs diff {diff.mean():.1f}"
    else:
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=codec_name,width,height,nb_read_frames,pix_fmt", "-of", "json", path],
            check=True, capture_output=True, text=True)
        st = json.loads(probe.stdout)["streams"][0]
        assert st["codec_name"] == "h264", st
        assert (st["width"], st["height"]) == (w, h), st
        assert int(st["nb_read_frames"]) == item["frames"], st
        # First decoded frame close to the first input frame.
        dec = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-f",
                              "rawvideo", "-pix_fmt", "rgb24", "-"], check=True,
                             capture_output=True).stdout
        first = np.frombuffer(dec, dtype=np.uint8).astype(np.int16)
        diff = np.abs(first - raw[: w * h * 3].astype(np.int16))
        assert diff.mean() < 12, f"{item['file']}: mean abs diff {diff.mean():.1f}"
    checked += 1
print(f"ok: {checked} files decoded")
assert checked >= 3

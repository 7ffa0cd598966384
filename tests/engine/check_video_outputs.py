"""The engine's MP4 outputs read back by independent tools: ffprobe (frames, size, fps) and
ffmpeg (a batch item decodes to the same frames as the same job alone).
usage: check_video_outputs.py <dir>"""
import json
import subprocess
import sys

import numpy as np


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=width,height,nb_read_frames,r_frame_rate,"
                          "codec_name,pix_fmt", "-of", "json", path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["streams"][0]


def frames(path, w, h):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(int)


d = sys.argv[1]
for name, (n, w, h, fps) in {"video_9f_64x48_12fps.mp4": (9, 64, 48, "12/1"),
                             "video_17f_32x32_8fps.mp4": (17, 32, 32, "8/1")}.items():
    s = probe(f"{d}/{name}")
    assert (int(s["nb_read_frames"]), s["width"], s["height"], s["r_frame_rate"]) == \
        (n, w, h, fps), (name, s)
    assert s["codec_name"] == "h264" and s["pix_fmt"] == "yuv420p", s
a, b = frames(f"{d}/batch_item1.mp4", 64, 48), frames(f"{d}/single_item1.mp4", 64, 48)
c = frames(f"{d}/batch_item0.mp4", 64, 48)
assert a.shape == b.shape == (9, 48, 64, 3), a.shape
assert np.abs(a - b).max() <= 8, np.abs(a - b).max()   # same job, batched or alone
assert np.abs(a - c).mean() > 4, np.abs(a - c).mean()  # another seed and prompt differ
print("ok")

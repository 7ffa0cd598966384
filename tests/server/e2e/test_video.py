"""Video end to end: one server serves the tiny image bundle and the tiny video bundle side by
side. grpcio and gratctl clients get MP4s whose chunks reassemble into files ffprobe reads with
the requested frame count, size and fps; images and videos interleaved from 16 clients; every
bad video input is INVALID_ARGUMENT naming the field; cancelling a video frees the worker
within a step; `grat_server --tiny-video` serves both tiny bundles without a config."""
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import yaml

import harness
from harness import pb2

VIDEO = harness.VIDEO_MODEL
CAPPED = "hunyuan-video-capped"  # the tiny video bundle with a lower max_video_pixels
CAP = 150000                     # 17 x 96 x 64 fits, 33 x 96 x 64 does not
# The tiny video bundle with a pretend measured memory table, served with memory_limit_gib:
# 96x64x9 (72 tokens, 1.44 GiB) fits one at a time; 96x64x17 (120 tokens, 2.4 GiB) does not.
MEMCAP = "hunyuan-video-memcap"
MEMORY_TABLE = "memory: {measured_on: Pretend GPU, peak_gib: [[50, 1.0], [100, 2.0]]}\n"
CHUNK = 4096                     # small result chunks: every MP4 arrives in several


def bundle_yaml():
    with open(os.path.join(harness.TINY_VIDEO_BUNDLE, "model.yaml")) as f:
        return yaml.safe_load(f)


def edited_bundle(prefix, edit):
    """The tiny video bundle's files (symlinked) with model.yaml passed through `edit`."""
    src = harness.TINY_VIDEO_BUNDLE
    os.makedirs(harness.TMP_ROOT, exist_ok=True)
    out = tempfile.mkdtemp(prefix=prefix, dir=harness.TMP_ROOT)
    for name in os.listdir(src):
        if name != "model.yaml":
            os.symlink(os.path.join(src, name), os.path.join(out, name))
    with open(os.path.join(src, "model.yaml")) as f:
        text = edit(f.read())
    with open(os.path.join(out, "model.yaml"), "w") as f:
        f.write(text)
    return out


def capped_bundle():
    """limits.max_video_pixels set to CAP."""
    def edit(text):
        text, n = re.subn(r"(?m)^(\s*max_video_pixels:[ \t]*)\d+[ \t]*$", rf"\g<1>{CAP}",
                          text)
        assert n == 1, "limits.max_video_pixels not found in the tiny video bundle's model.yaml"
        return text
    return edited_bundle("capped_video_", edit)


@pytest.fixture(scope="module")
def server():
    s = harness.Server(extra_yaml=f"chunk_bytes: {CHUNK}\n",
                       more_models_yaml=harness.video_model() +
                       harness.video_model(CAPPED, capped_bundle()) +
                       harness.video_model(MEMCAP, edited_bundle("memcap_video_",
                                                                 lambda t: t + MEMORY_TABLE),
                                           extra="    memory_limit_gib: 1.6\n"))
    yield s
    assert s.alive(), "server died:\n" + s.logs()
    assert s.stop() == 0, s.logs()


def status_of(stub, req, timeout=30, details=None):
    try:
        for _ in stub.Generate(req, timeout=timeout):
            pass
    except grpc.RpcError as err:
        if details is not None:
            details.update(harness.error_details(err) or {})
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("frames,fps,preview", [(9, 0, False), (17, 12, True)])
def test_python_client_mp4(server, frames, fps, preview):
    events, chunks, previews = [], [], []

    def on_event(e):
        kind = e.WhichOneof("event")
        events.append(kind)
        if kind == "result_chunk":
            chunks.append(e.result_chunk)
        elif kind == "progress" and e.progress.HasField("preview_png"):
            previews.append(e.progress.preview_png)

    data, mime, fin = harness.client.generate(
        server.stub, harness.video_request(frames=frames, fps=fps, steps=3, seed=frames,
                                           preview=preview),
        timeout=120, on_event=on_event)
    assert mime == "video/mp4"
    assert events[0] == "accepted" and "started" in events
    assert events.count("progress") >= 1 and events[-1] == "finished"
    # Chunks: at most CHUNK bytes each, in order, the last one flagged, total_bytes exact.
    assert len(chunks) == math.ceil(len(data) / CHUNK) > 1
    assert all(len(c.data) <= CHUNK and c.mime_type == "video/mp4" for c in chunks)
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.total_bytes == len(data) for c in chunks)
    want_fps = fps or bundle_yaml()["defaults"]["fps"]
    info = harness.probe_video(data)
    assert "mp4" in info["format"] and info["codec"] == "h264", info
    assert (info["width"], info["height"], info["frames"]) == (96, 64, frames), info
    assert info["fps"] == want_fps, info
    assert (fin.width, fin.height, fin.frames, fin.fps, fin.steps) == (96, 64, frames,
                                                                         want_fps, 3)
    assert fin.timings.decode_s > 0 and fin.timings.total_s > 0 and fin.job_id
    if preview:
        assert previews
        im = harness.decode_image(previews[-1])
        assert max(im.size) <= 96


def test_frames_0_is_the_models_default(server):
    defaults = bundle_yaml()["defaults"]
    data, mime, fin = harness.client.generate(
        server.stub, harness.video_request(frames=0, width=64, steps=1), timeout=120)
    assert mime == "video/mp4"
    assert fin.frames == defaults["frames"] and fin.fps == defaults["fps"]
    info = harness.probe_video(data)
    assert (info["frames"], info["fps"]) == (defaults["frames"], defaults["fps"]), info


def test_seed_reproduces_the_video(server):
    req = harness.video_request(frames=5, width=64, steps=2, seed=77)
    first, _, _ = harness.client.generate(server.stub, req, timeout=120)
    again, _, fin = harness.client.generate(server.stub, req, timeout=120)
    assert fin.seed == 77 and first == again


def test_list_models_video_limits(server):
    y = bundle_yaml()
    resp = server.stub.ListModels(pb2.ListModelsRequest(), timeout=10)
    assert resp.default_model == "flux-tiny"
    models = {m.name: m for m in resp.models}
    assert set(models) == {"flux-tiny", VIDEO, CAPPED, MEMCAP}
    v = models[VIDEO]
    assert v.kind == "video" and v.architecture == "hunyuan" and v.ready
    assert v.limits.max_frames == y["limits"]["max_frames"]
    assert v.limits.max_video_pixels == y["limits"]["max_video_pixels"]
    assert v.limits.max_pixels == y["limits"]["max_pixels"]
    assert v.limits.max_prompt_tokens == y["limits"]["max_prompt_tokens"]
    assert v.defaults.frames == y["defaults"]["frames"] and v.defaults.fps == y["defaults"]["fps"]
    assert list(v.defaults.attention_group) == y["grat"]["group"]
    assert models[CAPPED].limits.max_video_pixels == CAP
    img = models["flux-tiny"]
    assert img.kind == "image" and img.limits.max_video_pixels == 0
    assert img.limits.max_frames == 1 and img.defaults.frames == 1 and img.defaults.fps == 0


INVALID = [
    (VIDEO, dict(frames=2), "frames must be 4k+1 in [1, 33] (or 0 for the model's default 9); "
     "got 2"),
    (VIDEO, dict(frames=4), "frames must be 4k+1 in [1, 33]"),
    (VIDEO, dict(frames=8), "frames must be 4k+1 in [1, 33]"),
    (VIDEO, dict(frames=37), "frames must be 4k+1 in [1, 33]"),
    (VIDEO, dict(frames=-1), "frames must be 4k+1 in [1, 33]"),
    (CAPPED, dict(frames=33), f"frames x width x height must be at most {CAP} "
     "(max_video_pixels); got 33 x 96 x 64 = 202752"),
    (VIDEO, dict(fps=61), "fps must be in [1, 60] (or 0 for the model's default 8); got 61"),
    (VIDEO, dict(fps=-5), "fps must be in [1, 60]"),
    (VIDEO, dict(format=pb2.OUTPUT_FORMAT_PNG), "format must be MP4 (or unspecified) for video "
     "model hunyuan-video-tiny; got PNG"),
    (VIDEO, dict(format=pb2.OUTPUT_FORMAT_WEBP), "format must be MP4"),
    (VIDEO, dict(width=600), "width must be in [32, 512]"),
    (VIDEO, dict(width=400, height=400), "width x height must be at most 147456 pixels"),
    (VIDEO, dict(prompt="word " * 100), "max_prompt_tokens is 64"),
    (VIDEO, dict(attention=pb2.AttentionSettings(mode=pb2.ATTENTION_MODE_B, group=[4, 4])),
     "attention.group must have 3 entries"),
    (VIDEO, dict(attention=pb2.AttentionSettings(mode=pb2.ATTENTION_MODE_B, group=[4, 1, 1])),
     "attention.group[0] must be in [1, 3]"),  # 9 frames: 3 latent frames
    ("flux-tiny", dict(frames=9), "frames must be 1 (or 0) for image model flux-tiny; got 9"),
    ("flux-tiny", dict(fps=8), "fps must be 0 for image model flux-tiny"),
]


@pytest.mark.parametrize("model,fields,message", INVALID, ids=[m for _, _, m in INVALID])
def test_invalid_video_argument(server, model, fields, message):
    make = harness.request if model == "flux-tiny" else harness.video_request
    code, details = status_of(server.stub, make(model=model, **fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert message in details, details


def test_16_clients_images_and_videos_interleaved(server):
    def one(i):
        with grpc.insecure_channel(server.address) as ch:
            stub = harness.pb2_grpc.GenerationStub(ch)
            if i % 2:
                frames = 5 if i % 4 == 1 else 9
                req = harness.video_request(prompt=f"clip number {i}", seed=i, width=64,
                                            frames=frames, steps=2)
            else:
                req = harness.request(prompt=f"image number {i}", seed=i, steps=2)
            data, mime, fin = harness.client.generate(stub, req, timeout=240)
            if i % 2:
                assert mime == "video/mp4", mime
                info = harness.probe_video(data)
                assert (info["width"], info["height"], info["frames"]) == (64, 64, frames)
                return "video", fin.seed
            assert mime == "image/png", mime
            assert harness.decode_image(data).size == (64, 64)
            return "image", fin.seed

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert sorted(seed for _, seed in results) == list(range(16))
    assert [kind for kind, _ in results] == ["image", "video"] * 8


LONG_VIDEO = dict(width=384, height=384, frames=33, steps=60)  # ~0.25 s a step on 2 cores


def stream(stub, req, events, result):
    try:
        for e in stub.Generate(req):
            events.append((time.time(), e.WhichOneof("event"), e))
        result["code"] = grpc.StatusCode.OK
    except grpc.RpcError as err:
        result["code"] = err.code()
    result["t"] = time.time()


def wait_step(events, step, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(k == "progress" and e.progress.step >= step for _, k, e in list(events)):
            return
        time.sleep(0.01)
    raise AssertionError("no progress in time")


def step_seconds(events):
    """Seconds per denoising step so far: from Started to the last Progress."""
    started = next(t for t, k, _ in events if k == "started")
    t, _, last = [x for x in events if x[1] == "progress"][-1]
    return (t - started) / last.progress.step


def quick_video_after(server):
    t0 = time.time()
    data, _, fin = harness.client.generate(
        server.stub, harness.video_request(frames=5, width=64, steps=2), timeout=60)
    assert harness.probe_video(data)["frames"] == 5
    return time.time() - t0, fin.timings.queue_wait_s


@pytest.mark.parametrize("how", ["cancel_job", "rpc_cancel"])
def test_cancel_mid_video_frees_the_worker(server, how):
    events, result = [], {}
    req = harness.video_request(**LONG_VIDEO)
    if how == "cancel_job":
        t = threading.Thread(target=stream, args=(server.stub, req, events, result))
        t.start()
        wait_step(events, 3)
        job_id = events[0][2].accepted.job_id
        t_cancel = time.time()
        assert server.stub.CancelJob(pb2.CancelJobRequest(job_id=job_id), timeout=10).cancelled
        t.join(60)
        assert result["code"] == grpc.StatusCode.CANCELLED, result
        assert result["t"] - t_cancel < 2 * step_seconds(events) + 2, result
    else:
        call = server.stub.Generate(req)
        for e in call:
            events.append((time.time(), e.WhichOneof("event"), e))
            if e.HasField("progress") and e.progress.step >= 3:
                break
        job_id = events[0][2].accepted.job_id
        call.cancel()
    step = step_seconds(events)
    # The worker stops within a step: the next video starts at once and finishes promptly.
    total, queue_wait = quick_video_after(server)
    assert queue_wait < 2 * step + 1.0, (queue_wait, step)
    assert total < 20
    assert max(e.progress.step for _, k, e in events if k == "progress") < LONG_VIDEO["steps"]
    with pytest.raises(grpc.RpcError) as err:
        server.stub.CancelJob(pb2.CancelJobRequest(job_id=job_id), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_requests_that_cannot_fit_in_memory_are_refused_up_front(server):
    rich = {}
    code, details = status_of(server.stub, harness.video_request(model=MEMCAP, frames=17),
                              details=rich)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    # Not retryable as it is (no RetryInfo), and told apart from a full queue.
    assert rich["reason"] == "MEMORY_LIMIT_EXCEEDED" and rich["retry_s"] is None, rich
    assert ("frames x width x height = 17 x 96 x 64 needs about 2.4 GiB of device memory "
            "(model.yaml memory.peak_gib, measured on Pretend GPU); the limit on this device "
            "is 1.6 GiB (memory_limit_gib)") in details, details
    # What fits is served, and batches hold only what fits (one at a time here, max_batch 4).
    starts = []

    def run(seed):
        def on_event(e):
            if e.WhichOneof("event") == "started":
                starts.append(e.started.batch_size)
        return harness.client.generate(
            server.stub, harness.video_request(model=MEMCAP, frames=9, steps=1, seed=seed),
            timeout=120, on_event=on_event)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    assert all(mime == "video/mp4" for _, mime, _ in results)
    assert starts == [1, 1, 1, 1], starts
    assert server.alive(), server.logs()[-3000:]


def test_fuzzed_video_requests(server):
    """Near-valid video requests with one or two random (often bad) video fields: every call
    ends with a status, the valid ones are served, the server stays healthy."""
    rng = random.Random(20261128)
    int32 = [-2**31, -1, 0, 1, 2, 3, 4, 5, 8, 9, 13, 33, 34, 37, 60, 61, 1000, 2**31 - 1]

    def one(i):
        r = harness.video_request(prompt="a fox", width=rng.choice([32, 48, 64]),
                                  height=rng.choice([32, 64]), frames=rng.choice([1, 5]),
                                  steps=1, model=rng.choice([VIDEO, VIDEO, CAPPED, "flux-tiny"]))
        for _ in range(rng.randrange(1, 3)):
            field = rng.randrange(6)
            if field == 0:
                r.frames = rng.choice(int32)
            elif field == 1:
                r.fps = rng.choice(int32)
            elif field == 2:
                r.format = rng.randrange(-1, 5)
            elif field == 3:
                r.attention.mode = rng.randrange(0, 5)
                r.attention.group.extend(rng.choice([-1, 0, 1, 2, 3, 4, 9])
                                         for _ in range(rng.randrange(4)))
            elif field == 4:
                r.width, r.height = rng.choice(int32), rng.choice(int32)
            else:
                r.prompt = rng.choice(["", "word " * 70, "\u00e9\u4e2d\U0001F600" * 30,
                                       "<|begin_of_text|><|eot_id|><pad>" * 5])
        return r

    requests = [one(i) for i in range(400)]

    def outcome(r):
        try:
            for _ in server.stub.Generate(r, timeout=20):
                pass
            return "OK"
        except grpc.RpcError as err:
            return err.code().name

    with ThreadPoolExecutor(8) as pool:
        counts = Counter(pool.map(outcome, requests))
    print(dict(counts))
    assert sum(counts.values()) == 400
    assert counts["INVALID_ARGUMENT"] > 150 and counts["OK"] > 20, counts
    assert set(counts) <= {"OK", "INVALID_ARGUMENT"}, counts
    assert server.alive(), server.logs()[-5000:]
    assert harness.health_check(server.channel, "") == "SERVING"


def test_gratctl_video(server, tmp_path):
    base = [harness.GRATCTL_BIN, "--server", server.address]
    out = tmp_path / "clip.mp4"
    r = subprocess.run(base + ["generate", "--model", VIDEO, "--prompt", "a red fox",
                               "--width", "96", "--height", "64", "--frames", "9",
                               "--steps", "2", "--seed", "5", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "video/mp4, 96x64, 9 frames at 8 fps" in r.stdout, r.stdout
    assert "seed 5" in r.stdout and "timings:" in r.stdout
    assert "2/2 steps" in r.stderr
    info = harness.probe_video(out.read_bytes())
    assert (info["width"], info["height"], info["frames"], info["fps"]) == (96, 64, 9, 8), info

    # --fps, and --format mp4 for a file name without the extension.
    out2 = tmp_path / "clip.bin"
    r = subprocess.run(base + ["generate", "--model", VIDEO, "--prompt", "a fox", "--width",
                               "64", "--height", "64", "--frames", "5", "--fps", "24",
                               "--steps", "1", "--format", "mp4", "--quiet", "--out", str(out2)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = harness.probe_video(out2.read_bytes())
    assert (info["frames"], info["fps"]) == (5, 24), info

    # .png asks for PNG: the video model names the field.
    r = subprocess.run(base + ["generate", "--model", VIDEO, "--prompt", "a fox", "--frames",
                               "9", "--out", str(tmp_path / "clip.png")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and "format must be MP4" in r.stderr
    r = subprocess.run(base + ["generate", "--model", VIDEO, "--prompt", "a fox", "--fps", "61",
                               "--out", str(tmp_path / "c.mp4")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "fps must be in [1, 60]" in r.stderr, r.stderr

    r = subprocess.run(base + ["models"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "flux-tiny (default)  image/flux" in r.stdout
    assert f"{VIDEO}  video/hunyuan" in r.stdout
    assert "frames 4k+1 up to 33, frames x width x height up to 4866048 (max_video_pixels)" \
        in r.stdout and "defaults: frames 9, fps 8" in r.stdout, r.stdout


def test_python_example_client_video(server, tmp_path):
    out = tmp_path / "fox.mp4"
    script = os.path.join(harness.REPO, "clients", "python", "generate.py")
    r = subprocess.run([sys.executable, script,
                        "--server", server.address, "--model", VIDEO, "--prompt", "a red fox",
                        "--width", "64", "--height", "64", "--frames", "5", "--fps", "10",
                        "--steps", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "video/mp4, 64x64, 5 frames at 10 fps" in r.stdout, r.stdout
    info = harness.probe_video(out.read_bytes())
    assert (info["frames"], info["fps"]) == (5, 10), info


def test_no_config_server_with_tiny_video():
    s = harness.Server(use_config=False, server_args=["--tiny-video"])
    try:
        resp = s.stub.ListModels(pb2.ListModelsRequest(), timeout=10)
        assert resp.default_model == "flux-shapes"
        assert {m.name: m.kind for m in resp.models} == {"flux-shapes": "image", VIDEO: "video"}
        data, mime, _ = harness.client.generate(s.stub, harness.request(), timeout=60)
        assert mime == "image/png"
        harness.decode_image(data)
        data, mime, _ = harness.client.generate(
            s.stub, harness.video_request(frames=5, width=64, steps=1), timeout=60)
        assert mime == "video/mp4" and harness.probe_video(data)["frames"] == 5
    finally:
        assert s.stop() == 0

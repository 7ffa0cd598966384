"""The container image, built and run for real (no Docker daemon: buildah, chroot isolation).

Builds the Dockerfile (scripts/container_build.sh: the debootstrapped base where it cannot be
pulled, layer and pip caches), then checks the image:
- its configuration: non-root user, STOPSIGNAL SIGTERM, the gratctl health check, the /models
  volume, the ports, grat_server as entrypoint; the tag is the image deploy/k8s runs;
- its files: the kernels library holds sm_90a (and sm_80) code for the Hopper attention kernels
  (cuobjdump, no GPU needed), the default bundles are baked in, no compiler or nvcc came along;
- it serves: the image's own entrypoint and command start in it (as its user, host network),
  the image's health check passes inside it, and the host's gratctl lists the models and
  generates a PNG through it from outside; /metrics answers; SIGTERM drains and exits 0.
Prints how long the build and the whole test took, and the image's size.
usage: test_image.py REPO HOST_GRATCTL"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

repo, gratctl = sys.argv[1], sys.argv[2]
TAG = "gratserve:latest"
MAX_IMAGE_BYTES = 5 * 1024**3  # the torch wheel's CUDA libraries are ~3.4 GB of it
t_start = time.monotonic()


def run(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def server_pid(parent):
    """The grat_server process among `parent`'s descendants (buildah run's child), or None."""
    todo = [parent]
    while todo:
        p = todo.pop()
        try:
            if p != parent and open(f"/proc/{p}/comm").read().strip() == "grat_server":
                return p
            for t in os.listdir(f"/proc/{p}/task"):  # any thread may have forked (buildah: Go)
                todo += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


for tool in ("buildah", "debootstrap"):
    assert shutil.which(tool), f"{tool} not found: scripts/install_deps.sh installs it"

# The image deploy/k8s runs is the one this build tags.
images = set()
for path in glob.glob(os.path.join(repo, "deploy", "k8s", "**", "*.yaml"), recursive=True):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "Deployment":
            images |= {c["image"] for c in doc["spec"]["template"]["spec"]["containers"]
                       if c["name"] == "grat-server"}
assert images == {TAG}, f"deploy/k8s runs {images}, the build tags {TAG}"

# ---- build ----
t0 = time.monotonic()
b = subprocess.run([os.path.join(repo, "scripts", "container_build.sh"), TAG],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
build_s = time.monotonic() - t0
if b.returncode != 0:
    print(b.stdout[-12000:])
    raise AssertionError(f"container_build.sh failed ({b.returncode})")
print("\n".join(l for l in b.stdout.splitlines() if l.startswith(("container_", "[deps]"))))
print(f"image build: {build_s:.0f} s")

# ---- configuration ----
info = json.loads(run("buildah", "inspect", "--type", "image", TAG).stdout)
cfg = info["Docker"]["config"]
assert cfg["User"] == "10001:10001", cfg["User"]
assert cfg["StopSignal"] == "SIGTERM", cfg.get("StopSignal")
hc = cfg["Healthcheck"]["Test"]
assert hc[0] == "CMD" and hc[1:] == ["gratctl", "health"], hc
assert "/models" in (cfg.get("Volumes") or {}), cfg.get("Volumes")
assert {"50051/tcp", "9464/tcp"} <= set(cfg.get("ExposedPorts") or {}), cfg.get("ExposedPorts")
assert cfg["Entrypoint"] == ["grat_server"], cfg["Entrypoint"]
assert cfg["Cmd"] == ["--config", "/etc/grat/config.yaml"], cfg["Cmd"]
env = dict(e.split("=", 1) for e in cfg["Env"])
human = json.loads(run("buildah", "images", "--json", TAG).stdout)[0]["size"]  # "3.5 GB"
num, unit = re.fullmatch(r"([\d.]+)\s*([kMG]?B)", human).groups()
size = float(num) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
print(f"image size: {human} (buildah images)")
assert size < MAX_IMAGE_BYTES, f"image is {size / 1e9:.2f} GB, over {MAX_IMAGE_BYTES / 1e9:.1f}"

ctr = run("buildah", "from", "--pull=false", "--quiet", TAG).stdout.strip()
server = None
try:
    mnt = run("buildah", "mount", ctr).stdout.strip()
    # ---- files ----
    lib = os.path.join(mnt, "opt/gratserve/lib/libgrat_kernels.so")
    assert os.path.isfile(lib), lib
    cuobjdump = shutil.which("cuobjdump") or os.path.join(
        run(sys.executable, "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])")
        .stdout.strip(), "nvidia", "cu13", "bin", "cuobjdump")
    assert os.access(cuobjdump, os.X_OK), "no cuobjdump (requirements.txt: nvidia-cuda-cuobjdump)"
    elfs = run(cuobjdump, "--list-elf", lib).stdout
    cubins = set(re.findall(r"ELF file\s+\d+:\s+(\S+)\.cubin", elfs))
    print(f"kernels library: {len(cubins)} cubins, e.g. {sorted(cubins)[:4]}")
    for kernel in ("attention_fwd_sm90_bf16", "attention_fwd_sm90_fp16"):
        assert f"{kernel}.sm_90a" in cubins, (kernel, elfs)
    for kernel in ("attention_fwd_sm80_bf16", "attention_fwd_sm80_fp16", "rope"):
        assert {f"{kernel}.sm_80", f"{kernel}.sm_90a"} <= cubins, (kernel, elfs)
    for b in ("flux-shapes", "hunyuan-video-tiny"):
        assert os.path.isfile(os.path.join(mnt, "opt/gratserve/bundles", b, "model.yaml")), b
    leftovers = [p for p in ("usr/bin/gcc", "usr/bin/g++", "usr/bin/cmake", "usr/bin/python3")
                 if os.path.lexists(os.path.join(mnt, p))]
    leftovers += [p for p in glob.glob(os.path.join(mnt, "opt/venv/**/bin/nvcc"), recursive=True)]
    assert not leftovers, f"build tools in the runtime image: {leftovers}"

    # ---- serve ----
    port, mport = free_port(), free_port()
    addr = f"127.0.0.1:{port}"
    run("buildah", "config", "--env", f"GRAT_LISTEN={addr}",
        "--env", f"GRAT_METRICS_LISTEN=127.0.0.1:{mport}", "--env", f"GRAT_SERVER={addr}",
        "--env", "OMP_NUM_THREADS=1", ctr)
    log = tempfile.NamedTemporaryFile("w+", prefix="grat-container-", suffix=".log", delete=False)
    # The image's own entrypoint and command, as the image's user; chroot isolation shares the
    # host's network, so the port is reachable from outside the container.
    server = subprocess.Popen(
        ["buildah", "run", "--isolation", "chroot", "--network", "host", ctr, "--",
         *cfg["Entrypoint"], *cfg["Cmd"]], stdout=log, stderr=subprocess.STDOUT)
    ctl = [gratctl, "--server", addr]
    deadline = time.monotonic() + 180
    while True:
        if run(*ctl, "health", check=False).returncode == 0:
            break
        if server.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise AssertionError(f"server in the image did not come up:\n{log.read()[-4000:]}")
        time.sleep(1)
    print(f"server up in the image after {time.monotonic() - t0 - build_s:.0f} s")
    # The image's HEALTHCHECK, run inside it.
    h = run("buildah", "run", "--isolation", "chroot", "--network", "host", ctr, "--", *hc[1:])
    assert "SERVING" in h.stdout, h.stdout
    models = run(*ctl, "models").stdout
    assert "flux-shapes" in models and "hunyuan-video-tiny" in models, models
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.png")
        g = run(*ctl, "generate", "--prompt", "a red circle left of a blue square", "--width",
                "256", "--height", "256", "--steps", "4", "--seed", "3", "--out", out, timeout=600)
        from PIL import Image
        im = Image.open(out)
        assert im.format == "PNG" and im.size == (256, 256), (im.format, im.size)
        lo, hi = zip(*im.convert("RGB").getextrema())
        assert max(hi) - min(lo) > 10, "flat image"
        print(f"generated through the image: {out} {im.size} ({os.path.getsize(out)} bytes)")
        # The tiny video model: H.264 in MP4 through the image's FFmpeg libraries.
        mp4 = os.path.join(tmp, "out.mp4")
        run(*ctl, "generate", "--model", "hunyuan-video-tiny", "--prompt", "waves", "--width",
            "128", "--height", "128", "--frames", "9", "--fps", "8", "--seed", "3", "--out", mp4,
            timeout=600)
        probe = json.loads(run("ffprobe", "-v", "error", "-count_frames", "-show_streams",
                               "-of", "json", mp4).stdout)["streams"][0]
        assert (probe["codec_name"], probe["width"], probe["height"], probe["nb_read_frames"]) == \
            ("h264", 128, 128, "9"), probe
        print(f"generated through the image: {mp4} (h264, 128x128, 9 frames)")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode()
    assert re.search(r'grat_requests_total\{[^}]*model="flux-shapes"', metrics), metrics[:2000]
    # STOPSIGNAL: SIGTERM to the server process drains and exits 0 (what a container runtime
    # does to stop it; buildah run execs the command under itself).
    pid = server_pid(server.pid)
    assert pid, "grat_server process not found under buildah run"
    os.kill(pid, signal.SIGTERM)
    rc = server.wait(timeout=120)
    log.seek(0)
    text = log.read()
    assert rc == 0, f"server exited {rc} after SIGTERM:\n{text[-3000:]}"
    assert '"msg":"draining"' in text.replace(" ", "") and '"msg":"drained"' in text.replace(" ", ""), \
        text[-3000:]
    print("SIGTERM: drained, exit 0")
    server = None
finally:
    if server is not None and server.poll() is None:
        pid = server_pid(server.pid)
        if pid:
            os.kill(pid, signal.SIGKILL)
        server.kill()
        server.wait()
    run("buildah", "rm", ctr, check=False)
print(f"container test: {time.monotonic() - t_start:.0f} s in all (build {build_s:.0f} s)")
print("container ok")

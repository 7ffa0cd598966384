"""End-to-end harness: starts the real grat_server binary on free loopback ports and gives
grpcio stubs for it (generated at run time by clients/python/generate.py)."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

REPO = os.environ.get("GRAT_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                                 "..", "..", "..")))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
import generate as client  # noqa: E402

pb2, pb2_grpc = client.load_stubs(os.path.join(REPO, "proto"))

SERVER_BIN = os.environ.get("GRAT_SERVER_BIN", os.path.join(REPO, "build-srv", "server",
                                                            "grat_server"))
GRATCTL_BIN = os.environ.get("GRATCTL_BIN", os.path.join(REPO, "build-srv", "clients",
                                                         "gratctl"))
TINY_BUNDLE = os.environ.get("GRAT_TINY_BUNDLE", os.path.join(REPO, "bundles", "flux-tiny"))
TINY_VIDEO_BUNDLE = os.environ.get("GRAT_TINY_VIDEO_BUNDLE",
                                   os.path.join(REPO, "bundles", "hunyuan-video-tiny"))
VIDEO_MODEL = "hunyuan-video-tiny"
TMP_ROOT = os.environ.get("GRAT_E2E_TMP", tempfile.gettempdir())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_check(channel, service="", timeout=5):
    """grpc.health.v1 Check through a generic unary call (no extra stubs needed)."""
    name = service.encode()
    req = (b"\x0a" + bytes([len(name)]) + name) if name else b""
    call = channel.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=lambda x: x,
                               response_deserializer=lambda x: x)
    resp = call(req, timeout=timeout)
    return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}[
        resp[1] if len(resp) >= 2 else 0]


class Server:
    """One grat_server process. `model_yaml`: YAML lines under the flux-tiny entry;
    `more_models_yaml`: further entries of `models:` (e.g. the tiny video model, video_model());
    `server_args`: more command-line arguments."""

    def __init__(self, max_queue=64, max_batch=4, drain_timeout_s=30, extra_yaml="",
                 model_yaml="", use_config=True, more_models_yaml="", server_args=(),
                 max_batch_delay_ms=10, credentials=None, env_extra=None):
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        os.makedirs(TMP_ROOT, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="srv_", dir=TMP_ROOT)
        self.log_path = os.path.join(self.dir, "server.log")
        args = [SERVER_BIN]
        env = dict(os.environ)
        # LibTorch's OpenMP threads spin-wait; on a small shared CI host that makes steps
        # erratic (seconds each while compilers run). One thread keeps timings predictable.
        env.setdefault("OMP_NUM_THREADS", "1")
        env.update(env_extra or {})
        if use_config:
            cfg = os.path.join(self.dir, "config.yaml")
            with open(cfg, "w") as f:
                f.write(f"listen: \"{self.address}\"\n"
                        f"metrics_listen: \"127.0.0.1:{self.metrics_port}\"\n"
                        f"drain_timeout_s: {drain_timeout_s}\n"
                        f"{extra_yaml}"
                        "models:\n"
                        "  - name: flux-tiny\n"
                        f"    bundle: \"{TINY_BUNDLE}\"\n"
                        f"    max_queue: {max_queue}\n"
                        f"    max_batch: {max_batch}\n"
                        f"    max_batch_delay_ms: {max_batch_delay_ms}\n"
                        f"{model_yaml}"
                        f"{more_models_yaml}")
            args += ["--config", cfg]
        else:
            env["GRAT_LISTEN"] = self.address
            env["GRAT_METRICS_LISTEN"] = f"127.0.0.1:{self.metrics_port}"
        args += list(server_args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        # `credentials`: a TLS server's (grpc.ssl_channel_credentials), for health and stub.
        options = [("grpc.max_receive_message_length", 16 << 20)]
        self.channel = (grpc.secure_channel(self.address, credentials, options=options)
                        if credentials else grpc.insecure_channel(self.address, options=options))
        self.stub = pb2_grpc.GenerationStub(self.channel)
        self._wait_ready()

    def _wait_ready(self, timeout=90):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if health_check(self.channel, "", timeout=1) == "SERVING":
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not SERVING in time:\n" + self.logs())

    def logs(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=60):
        """SIGTERM, wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.channel.close()
        self.log.close()
        return self.proc.returncode


def video_model(name=VIDEO_MODEL, bundle=TINY_VIDEO_BUNDLE, max_queue=64, max_batch=4,
                extra=""):
    """A `models:` entry (YAML) serving the tiny video bundle; `extra`: more keys."""
    return (f"  - name: {name}\n"
            f"    bundle: \"{bundle}\"\n"
            f"    max_queue: {max_queue}\n"
            f"    max_batch: {max_batch}\n"
            "    max_batch_delay_ms: 10\n" + extra)


def request(**kw):
    """A GenerateRequest with small defaults (64x64, 2 steps)."""
    attention = kw.pop("attention", None)
    r = pb2.GenerateRequest(prompt=kw.pop("prompt", "a red fox in the snow"),
                            width=kw.pop("width", 64), height=kw.pop("height", 64),
                            steps=kw.pop("steps", 2), **kw)
    if attention is not None:
        r.attention.CopyFrom(attention)
    return r


def video_request(**kw):
    """A GenerateRequest for the tiny video model with small defaults (96x64, 9 frames,
    2 steps)."""
    kw.setdefault("model", VIDEO_MODEL)
    kw.setdefault("width", 96)
    kw.setdefault("frames", 9)
    return request(**kw)


def probe_video(data, tmp_dir=None):
    """ffprobe of MP4 bytes: {codec, width, height, frames (decoded), fps (float)}."""
    import json
    import subprocess

    fd, path = tempfile.mkstemp(suffix=".mp4", dir=tmp_dir or TMP_ROOT)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                            "-show_entries",
                            "stream=codec_name,width,height,r_frame_rate,nb_read_frames",
                            "-show_entries", "format=format_name", "-of", "json", path],
                           capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    (st,) = info["streams"]
    num, den = st["r_frame_rate"].split("/")
    return {"format": info["format"]["format_name"], "codec": st["codec_name"],
            "width": st["width"], "height": st["height"], "frames": int(st["nb_read_frames"]),
            "fps": float(num) / float(den)}


def decode_image(data, fmt="PNG"):
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    assert im.format == fmt, im.format
    return im


def rpc_error(fn):
    """The grpc.RpcError that fn() raises, or None if it returns."""
    try:
        fn()
    except grpc.RpcError as err:
        return err
    return None


def error_details(err):
    """The google.rpc details of a failed call, decoded as any standard client would
    (grpcio-status): {"code", "reason", "domain", "retry_s" (None without RetryInfo)}."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    st = rpc_status.from_call(err)
    if st is None:
        return None
    out = {"code": st.code, "reason": None, "domain": None, "retry_s": None}
    for any_ in st.details:
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
            out["reason"], out["domain"] = info.reason, info.domain
        elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            any_.Unpack(retry)
            out["retry_s"] = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return out

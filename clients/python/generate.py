#!/usr/bin/env python3
"""GRATServe Python client example (grpcio).

The grat.v1 stubs are generated at run time by grpc_tools.protoc from proto/ into a
temporary folder (nothing generated is committed):

    python3 clients/python/generate.py --server localhost:50051 --prompt "a red fox" \
        --width 256 --height 256 --steps 4 --attention B --out fox.png
    python3 clients/python/generate.py --model hunyuan-video-tiny --prompt "a red fox" \
        --width 96 --height 64 --frames 9 --fps 8 --out fox.mp4

Without --format, the format follows the extension of --out (.png, .webp, .mp4; else the
model's default: PNG for images, MP4 for video).

Other programs (the end-to-end tests) import `load_stubs` and `generate` from here.
"""
import argparse
import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_ROOT = os.path.join(REPO, "proto")
_stubs = None


def load_stubs(proto_root=PROTO_ROOT, out_dir=None):
    """Generates grat/v1 Python stubs (once per process) and returns (pb2, pb2_grpc)."""
    global _stubs
    if _stubs is not None:
        return _stubs
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="grat_stubs_")
        atexit.register(shutil.rmtree, out_dir, True)
    os.makedirs(out_dir, exist_ok=True)
    proto = os.path.join(proto_root, "grat", "v1", "generation.proto")
    try:
        from grpc_tools import protoc
    except ImportError:  # e.g. a GPU host without grpcio-tools: protoc + grpc_python_plugin
        _protoc_binary(proto_root, out_dir, proto)
    else:
        include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        rc = protoc.main(["grpc_tools.protoc", f"-I{proto_root}", f"-I{include}",
                          f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", proto])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({rc}) on {proto_root}")
    sys.path.insert(0, out_dir)
    pb2 = importlib.import_module("grat.v1.generation_pb2")
    pb2_grpc = importlib.import_module("grat.v1.generation_pb2_grpc")
    _stubs = (pb2, pb2_grpc)
    return _stubs


def _protoc_binary(proto_root, out_dir, proto):
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise RuntimeError("no Python gRPC stub generator: pip install grpcio-tools, or put "
                           "protoc and grpc_python_plugin on PATH")
    subprocess.run([protoc, f"-I{proto_root}", f"--python_out={out_dir}",
                    f"--plugin=protoc-gen-grpc_python={plugin}",
                    f"--grpc_python_out={out_dir}", proto], check=True)


MODES = {"auto": 1, "full": 2, "B": 3, "b": 3, "X": 4, "x": 4}
FORMATS = {"png": 1, "webp": 2, "mp4": 3}


def channel(server, tls=False, ca=None, token=None):
    """A channel to the server: TLS when asked for (`ca`: a PEM file of roots, implies TLS;
    else the system's roots), and `token` sent as 'authorization: Bearer <token>' on every
    call."""
    if not (tls or ca):
        if token:
            raise ValueError("an API key over plaintext would be sent in the clear: use tls")
        return grpc.insecure_channel(server)
    roots = open(ca, "rb").read() if ca else None
    creds = grpc.ssl_channel_credentials(root_certificates=roots)
    if token:
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(server, creds)


def generate(stub, request, timeout=None, on_event=None, metadata=None):
    """Runs one Generate call; returns (bytes, mime, Finished). Raises grpc.RpcError."""
    pb2, _ = load_stubs()
    chunks, mime, finished, expected = [], "", None, 0
    for event in stub.Generate(request, timeout=timeout, metadata=metadata):
        if on_event:
            on_event(event)
        kind = event.WhichOneof("event")
        if kind == "result_chunk":
            c = event.result_chunk
            if c.index != expected:
                raise RuntimeError(f"chunk {c.index} arrived, expected {expected}")
            expected += 1
            chunks.append(c.data)
            mime = c.mime_type
        elif kind == "finished":
            finished = event.finished
    if finished is None:
        raise RuntimeError("stream ended without Finished")
    return b"".join(chunks), mime, finished


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("GRAT_SERVER", "localhost:50051"))
    ap.add_argument("--model", default="")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--negative", default="")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--frames", type=int, default=0,
                    help="video: 4k+1 frames (0: the model's default); images: 0 or 1")
    ap.add_argument("--fps", type=int, default=0,
                    help="video: frames per second in [1, 60] (0: the model's default)")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--attention", choices=sorted(MODES), default="auto")
    ap.add_argument("--format", choices=sorted(FORMATS),
                    help="default: from the extension of --out")
    ap.add_argument("--timeout", type=float)
    ap.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    ap.add_argument("--ca", help="PEM file of the roots to trust (implies --tls)")
    ap.add_argument("--token", default=os.environ.get("GRAT_TOKEN"),
                    help="API key (default $GRAT_TOKEN), sent as a Bearer token")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    pb2, pb2_grpc = load_stubs()
    fmt = args.format or os.path.splitext(args.out)[1].lstrip(".").lower()
    req = pb2.GenerateRequest(model=args.model, prompt=args.prompt,
                              negative_prompt=args.negative, width=args.width,
                              height=args.height, frames=args.frames, fps=args.fps,
                              steps=args.steps, format=FORMATS.get(fmt, 0))
    req.attention.mode = MODES[args.attention]
    if args.seed is not None:
        req.seed = args.seed
    if args.guidance is not None:
        req.guidance = args.guidance

    def show(event):
        kind = event.WhichOneof("event")
        if kind == "accepted":
            print(f"job {event.accepted.job_id} accepted", file=sys.stderr)
        elif kind == "progress":
            p = event.progress
            print(f"\rstep {p.step}/{p.total}", end="", file=sys.stderr, flush=True)

    t0 = time.time()
    with channel(args.server, args.tls, args.ca, args.token) as ch:
        stub = pb2_grpc.GenerationStub(ch)
        try:
            data, mime, fin = generate(stub, req, timeout=args.timeout, on_event=show)
        except grpc.RpcError as e:
            print(f"\nerror: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    print(file=sys.stderr)
    with open(args.out, "wb") as f:
        f.write(data)
    t = fin.timings
    video = f", {fin.frames} frames at {fin.fps} fps" if mime.startswith("video/") else ""
    print(f"wrote {args.out} ({len(data)} bytes, {mime}, {fin.width}x{fin.height}{video}); "
          f"seed {fin.seed}; "
          f"attention {fin.attention}; server total {t.total_s:.3f}s, "
          f"client {time.time() - t0:.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SIGTERM: health goes NOT_SERVING, new requests get UNAVAILABLE, the running job finishes,
and the process exits 0."""
import signal
import threading
import time

import grpc
import pytest

import harness


def test_sigterm_drains():
    s = harness.Server(drain_timeout_s=200)
    events, result = [], {}

    def run():
        try:
            data, _, fin = harness.client.generate(
                s.stub, harness.request(width=256, height=256, steps=100), timeout=220,
                on_event=lambda e: events.append(e.WhichOneof("event")))
            harness.decode_image(data)
            result["code"] = "ok"
        except grpc.RpcError as err:
            result["code"] = err.code()

    t = threading.Thread(target=run)
    t.start()
    while events.count("progress") < 1:
        time.sleep(0.02)
    s.proc.send_signal(signal.SIGTERM)
    # While draining: NOT_SERVING and UNAVAILABLE for new work (checked until the running
    # job ends and the server exits).
    seen_not_serving = seen_unavailable = False
    errors = []
    while s.alive() and not (seen_not_serving and seen_unavailable):
        try:
            if (harness.health_check(s.channel, "", timeout=5) == "NOT_SERVING" and
                    harness.health_check(s.channel, "flux-tiny", timeout=5) == "NOT_SERVING"):
                seen_not_serving = True
        except grpc.RpcError as err:
            errors.append(("health", err.code()))
        if not seen_not_serving:
            time.sleep(0.01)
            continue  # a request sent before SIGTERM takes effect would be admitted
        try:
            for _ in s.stub.Generate(harness.request(), timeout=10):
                pass
            errors.append(("generate", "OK"))
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                seen_unavailable = True
            else:
                errors.append(("generate", err.code()))
        time.sleep(0.05)
    t.join(220)
    assert result.get("code") == "ok", (result, s.logs())
    assert seen_not_serving and seen_unavailable, (seen_not_serving, seen_unavailable, errors,
                                                   s.logs())
    assert s.proc.wait(60) == 0
    logs = s.logs()
    assert '"msg":"draining"' in logs and '"msg":"drained"' in logs
    s.stop()


def test_drain_timeout_cancels_running_job():
    s = harness.Server(drain_timeout_s=1)
    result = {}

    def run():
        try:
            for _ in s.stub.Generate(harness.request(width=1024, height=1024, steps=100),
                                     timeout=120):
                pass
            result["code"] = "ok"
        except grpc.RpcError as err:
            result["code"] = err.code()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(60) == 0
    assert time.time() - t0 < 20
    t.join(30)
    assert result.get("code") == grpc.StatusCode.UNAVAILABLE, result
    s.stop()

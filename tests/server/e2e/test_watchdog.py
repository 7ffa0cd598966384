"""Health that tells the truth: a worker made to hang (test hook) turns its model, readiness
and liveness NOT_SERVING and they come back when it moves again; a sticky device error (test
hook) fails the job with UNAVAILABLE / DEVICE_FAILED and the process exits non-zero; draining
turns readiness NOT_SERVING but leaves liveness (grat.liveness) alone."""
import signal
import threading
import time

import grpc

import harness

LIVE = "grat.liveness"


def health(s, service):
    try:
        return harness.health_check(s.channel, service, timeout=2)
    except grpc.RpcError as e:
        return e.code().name


def wait_health(s, service, want, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if health(s, service) == want:
            return True
        time.sleep(0.2)
    return False


def test_a_hung_worker_turns_health_not_serving_until_it_moves():
    s = harness.Server(extra_yaml="watchdog: {stall_factor: 5, min_stall_s: 2}\n",
                       model_yaml="    inject_hang_at_step: 1\n    inject_hang_s: 8\n")
    try:
        assert health(s, LIVE) == "SERVING" and health(s, "flux-tiny") == "SERVING"
        out = []
        t = threading.Thread(target=lambda: out.append(harness.client.generate(
            s.stub, harness.request(steps=3), timeout=60)))
        t.start()
        for service in ("flux-tiny", "", LIVE):
            assert wait_health(s, service, "NOT_SERVING", timeout=15), (service, s.logs()[-2000:])
        assert "worker stalled" in s.logs()
        t.join(60)
        assert out and out[0][1] == "image/png"
        for service in ("flux-tiny", "", LIVE):
            assert wait_health(s, service, "SERVING", timeout=10), service
    finally:
        assert s.stop() == 0


def test_a_sticky_device_error_fails_the_job_and_exits_non_zero():
    s = harness.Server(model_yaml="    inject_device_error_at_step: 1\n")
    try:
        err = harness.rpc_error(
            lambda: harness.client.generate(s.stub, harness.request(steps=3), timeout=60))
        assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE, err
        d = harness.error_details(err)
        assert d["reason"] == "DEVICE_FAILED" and d["retry_s"] == 1.0, d
        s.proc.wait(30)
        assert s.proc.returncode == 3, s.logs()[-3000:]
        assert "device failed; the process exits" in s.logs()
    finally:
        if s.alive():
            s.stop()
        else:
            s.channel.close()
            s.log.close()


def test_drain_turns_readiness_off_and_leaves_liveness_on():
    # The job in flight is held for 6 s (the hang hook) so the drain has something to wait for.
    s = harness.Server(drain_timeout_s=30,
                       model_yaml="    inject_hang_at_step: 1\n    inject_hang_s: 6\n")
    try:
        done = []
        t = threading.Thread(target=lambda: done.append(harness.client.generate(
            s.stub, harness.request(steps=3), timeout=120)))
        t.start()
        time.sleep(1.0)
        s.proc.send_signal(signal.SIGTERM)
        assert wait_health(s, "", "NOT_SERVING", timeout=10)
        assert health(s, "flux-tiny") == "NOT_SERVING"
        assert health(s, LIVE) == "SERVING"
        t.join(120)
        assert done and done[0][1] == "image/png"  # the job in flight finished
    finally:
        assert s.stop() == 0

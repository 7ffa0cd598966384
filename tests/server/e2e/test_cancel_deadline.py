"""Cancel (CancelJob and client-side RPC cancel) and deadlines, mid-generation: the job stops
within a step and the worker serves the next request at once."""
import threading
import time

import grpc
import pytest

import harness

LONG = dict(width=1024, height=1024, steps=100)  # ~15 s on 2 CPU cores


def wait_progress(events, step=2, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(k == "progress" and e.progress.step >= step for k, e in list(events)):
            return
        time.sleep(0.02)
    raise AssertionError("no progress in time")


def run_stream(stub, req, events, result, timeout=None):
    try:
        for e in stub.Generate(req, timeout=timeout):
            events.append((e.WhichOneof("event"), e))
        result["code"] = grpc.StatusCode.OK
    except grpc.RpcError as err:
        result["code"] = err.code()
        result["details"] = err.details()


def quick_generation_ok(server):
    t0 = time.time()
    data, _, _ = harness.client.generate(server.stub, harness.request(), timeout=60)
    harness.decode_image(data)
    return time.time() - t0


def test_cancel_job_mid_generation(server):
    events, result = [], {}
    t = threading.Thread(target=run_stream,
                         args=(server.stub, harness.request(**LONG), events, result))
    t.start()
    wait_progress(events)
    job_id = events[0][1].accepted.job_id
    t0 = time.time()
    resp = server.stub.CancelJob(harness.pb2.CancelJobRequest(job_id=job_id), timeout=10)
    assert resp.cancelled
    t.join(60)
    assert result["code"] == grpc.StatusCode.CANCELLED, result
    assert time.time() - t0 < 10
    last = max(e.progress.step for k, e in events if k == "progress")
    assert last < 100
    assert quick_generation_ok(server) < 20
    with pytest.raises(grpc.RpcError) as err:
        server.stub.CancelJob(harness.pb2.CancelJobRequest(job_id=job_id), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_cancel_cancels_job(server):
    call = server.stub.Generate(harness.request(**LONG))
    job_id = None
    for e in call:
        if e.HasField("accepted"):
            job_id = e.accepted.job_id
        if e.HasField("progress") and e.progress.step >= 2:
            break
    call.cancel()
    assert job_id
    # The job is gone from the scheduler (cancelled within a step), and the worker is free.
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            server.stub.CancelJob(harness.pb2.CancelJobRequest(job_id=job_id), timeout=10)
            time.sleep(0.1)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
            break
    else:
        raise AssertionError("job still known 20 s after the client cancelled")
    assert quick_generation_ok(server) < 20
    assert job_id in server.logs()


def test_deadline_mid_generation(server):
    events, result = [], {}
    t0 = time.time()
    run_stream(server.stub, harness.request(**LONG), events, result, timeout=2.0)
    assert result["code"] == grpc.StatusCode.DEADLINE_EXCEEDED, result
    assert time.time() - t0 < 10
    assert any(k == "progress" for k, _ in events) or any(k == "started" for k, _ in events)
    assert quick_generation_ok(server) < 20


def test_deadline_while_queued(server):
    # One long job occupies the worker (max_batch batches only equal shapes); the second,
    # with a short deadline, expires in the queue.
    events, result = [], {}
    t = threading.Thread(target=run_stream,
                         args=(server.stub, harness.request(**LONG), events, result))
    t.start()
    wait_progress(events, step=1)
    with pytest.raises(grpc.RpcError) as err:
        for _ in server.stub.Generate(harness.request(width=128), timeout=1.0):
            pass
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    server.stub.CancelJob(harness.pb2.CancelJobRequest(job_id=events[0][1].accepted.job_id),
                          timeout=10)
    t.join(60)
    assert result["code"] == grpc.StatusCode.CANCELLED

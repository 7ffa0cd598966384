"""Slow and silent clients: a client that stops reading is cancelled after write_timeout_s and
its buffered result freed (its job ends), results waiting for slow clients are capped server-
wide (RESOURCE_EXHAUSTED, RESULT_BUFFER_FULL, retry hint), and 16 other clients are served
meanwhile."""
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

import harness

BIG = dict(width=1024, height=1024, steps=1)  # a ~3 MB PNG: far more than a 64 KiB window


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def silent_call(address):
    """A Generate call whose client reads the first event and then nothing: without BDP
    probing its flow-control window stays at 64 KiB, so the server's writes stall."""
    ch = grpc.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0)])
    stub = harness.pb2_grpc.GenerationStub(ch)
    call = stub.Generate(harness.request(**BIG), timeout=120)
    first = next(call)
    assert first.WhichOneof("event") == "accepted"
    return ch, call


def wait_for(server, text, n=1, timeout=60):
    deadline = time.time() + timeout
    while server.logs().count(text) < n and time.time() < deadline:
        time.sleep(0.2)
    return server.logs().count(text) >= n


def test_silent_clients_are_cancelled_and_the_rest_served():
    s = harness.Server(extra_yaml="write_timeout_s: 6\nchunk_bytes: 65536\n"
                                  "max_buffered_bytes: 4194304\n")
    try:
        base = rss_mb(s.proc.pid)
        silent = [silent_call(s.address)]
        # Its ~3 MB result waits in the server; another one would pass the 4 MiB cap.
        time.sleep(0.5)
        err = None
        deadline = time.time() + 60
        while err is None and time.time() < deadline:
            err = harness.rpc_error(
                lambda: harness.client.generate(s.stub, harness.request(**BIG), timeout=60))
            if "client stopped reading" in s.logs():
                break
        # The silent stream still holds its result: the cap refuses the next big one.
        assert err is not None, "the buffer cap never refused a result"
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        d = harness.error_details(err)
        assert d["reason"] == "RESULT_BUFFER_FULL" and d["retry_s"] == 5.0, d
        assert "max_buffered_bytes 4194304" in err.details()
        # 16 ordinary clients are served while the silent one sits there.
        with ThreadPoolExecutor(16) as pool:
            outs = list(pool.map(lambda i: harness.client.generate(
                s.stub, harness.request(seed=i), timeout=120), range(16)))
        assert all(mime == "image/png" for _, mime, _ in outs)
        # The silent stream is cancelled within write_timeout (6 s + the 0.5 s sweep) and its
        # buffer freed: a big result fits again.
        assert wait_for(s, "client stopped reading; stream cancelled", 1, timeout=30), \
            s.logs()[-3000:]
        ch, call = silent[0]
        try:
            for _ in call:
                pass
            raise AssertionError("the silent stream was not cancelled")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.CANCELLED, e
        ch.close()
        data, _, _ = harness.client.generate(s.stub, harness.request(**BIG), timeout=120)
        assert len(data) > 1 << 20
        # Memory stays bounded: four more silent clients come and go, each either cancelled
        # for not reading or refused by the buffer cap.
        ended = s.logs().count("client stopped reading") + s.logs().count("result buffer full")
        for _ in range(4):
            silent.append(silent_call(s.address))
        deadline = time.time() + 90
        while time.time() < deadline and (s.logs().count("client stopped reading") +
                                          s.logs().count("result buffer full")) < ended + 4:
            time.sleep(0.2)
        assert (s.logs().count("client stopped reading") +
                s.logs().count("result buffer full")) >= ended + 4, s.logs()[-3000:]
        for ch, _ in silent[1:]:
            ch.close()
        assert rss_mb(s.proc.pid) < base + 400, (base, rss_mb(s.proc.pid))
        assert s.alive()
    finally:
        assert s.stop() == 0

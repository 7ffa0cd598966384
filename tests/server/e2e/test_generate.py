"""A real C++ client (gratctl) and a real Python grpcio client generate images whose
reassembled chunks decode as valid PNGs; ListModels; reported seeds reproduce."""
import os
import re
import subprocess

import harness
from harness import pb2


def test_python_client_png(server):
    events = []
    data, mime, fin = harness.client.generate(
        server.stub, harness.request(width=96, height=64, steps=3), timeout=60,
        on_event=lambda e: events.append(e.WhichOneof("event")))
    assert mime == "image/png"
    im = harness.decode_image(data)
    assert im.size == (96, 64)
    assert events[0] == "accepted"
    assert "queued" in events and "started" in events
    assert events.count("progress") >= 1
    assert events[-1] == "finished"
    assert fin.steps == 3 and fin.width == 96 and fin.height == 64
    assert fin.timings.total_s > 0 and fin.timings.denoise_s > 0
    assert fin.job_id


def test_seed_reported_and_reproducible(server):
    _, _, first = harness.client.generate(server.stub, harness.request(), timeout=60)
    data1, _, again = harness.client.generate(server.stub, harness.request(seed=first.seed),
                                              timeout=60)
    data2, _, _ = harness.client.generate(server.stub, harness.request(seed=first.seed),
                                          timeout=60)
    assert again.seed == first.seed
    assert data1 == data2


def test_webp_and_attention_modes(server):
    for mode in (pb2.ATTENTION_MODE_FULL, pb2.ATTENTION_MODE_B, pb2.ATTENTION_MODE_X):
        att = pb2.AttentionSettings(mode=mode)
        data, mime, fin = harness.client.generate(
            server.stub, harness.request(width=128, height=128, attention=att,
                                         format=pb2.OUTPUT_FORMAT_WEBP), timeout=60)
        assert mime == "image/webp"
        harness.decode_image(data, "WEBP")
        assert fin.attention


def test_small_chunks_reassemble(tmp_path):
    s = harness.Server(extra_yaml="chunk_bytes: 1024\n")
    try:
        chunks = []
        data, _, _ = harness.client.generate(
            s.stub, harness.request(width=128, height=128), timeout=60,
            on_event=lambda e: chunks.append(e.result_chunk) if e.HasField("result_chunk")
            else None)
        assert len(chunks) > 3
        assert all(len(c.data) <= 1024 for c in chunks)
        assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
        assert chunks[0].total_bytes == len(data)
        harness.decode_image(data)
    finally:
        assert s.stop() == 0


def test_gratctl_generate_models_health_cancel(server, tmp_path):
    out = tmp_path / "fox.png"
    r = subprocess.run([harness.GRATCTL_BIN, "--server", server.address, "generate",
                        "--prompt", "a red fox", "--width", "128", "--height", "64",
                        "--steps", "3", "--seed", "1234", "--attention", "B", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "seed 1234" in r.stdout and "timings:" in r.stdout
    assert "3/3 steps" in r.stderr
    im = harness.decode_image(out.read_bytes())
    assert im.size == (128, 64)

    r = subprocess.run([harness.GRATCTL_BIN, "--server", server.address, "models"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "flux-tiny (default)" in r.stdout, r.stdout + r.stderr
    assert re.search(r"sides 64\.\.1024", r.stdout)

    for svc in ([], ["flux-tiny"]):
        r = subprocess.run([harness.GRATCTL_BIN, "--server", server.address, "health"] + svc,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == "SERVING", r.stdout + r.stderr

    r = subprocess.run([harness.GRATCTL_BIN, "--server", server.address, "cancel", "0123"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr

    r = subprocess.run([harness.GRATCTL_BIN, "--server", server.address, "generate",
                        "--prompt", "x", "--width", "100", "--out", str(tmp_path / "x.png")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and "width" in r.stderr


def test_list_models(server):
    resp = server.stub.ListModels(pb2.ListModelsRequest(), timeout=10)
    assert resp.default_model == "flux-tiny"
    (m,) = resp.models
    assert m.name == "flux-tiny" and m.kind == "image" and m.ready
    assert m.limits.side_multiple == 16 and m.limits.max_steps == 100
    assert m.defaults.steps > 0 and list(m.devices) == ["cpu"]


def test_no_argument_server_serves_the_trained_default_model():
    s = harness.Server(use_config=False)
    try:
        resp = s.stub.ListModels(pb2.ListModelsRequest(), timeout=10)
        assert resp.default_model == "flux-shapes" and len(resp.models) == 1
        data, _, _ = harness.client.generate(s.stub, harness.request(), timeout=60)
        harness.decode_image(data)
        assert '"msg":"serving"' in s.logs()
    finally:
        assert s.stop() == 0


def test_out_of_memory_is_resource_exhausted_and_worker_lives_on():
    import grpc
    import pytest

    s = harness.Server(model_yaml="    inject_oom_at_step: 1\n")
    try:
        with pytest.raises(grpc.RpcError) as err:
            harness.client.generate(s.stub, harness.request(steps=3), timeout=60)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "out of memory" in err.value.details()
        # A machine-readable reason and a retry hint; the allocator's text stays in the log.
        d = harness.error_details(err.value)
        assert d == {"code": grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                     "reason": "GPU_OUT_OF_MEMORY", "domain": "grat.v1", "retry_s": 10.0}, d
        assert "injected out-of-memory" not in err.value.details()
        assert "injected out-of-memory" in s.logs()
        data, _, _ = harness.client.generate(s.stub, harness.request(), timeout=60)
        harness.decode_image(data)
    finally:
        assert s.stop() == 0


def test_out_of_memory_in_a_batch_is_retried_one_job_at_a_time():
    import concurrent.futures

    # The first batch (four equal-shape requests, gathered for up to 2 s) fails with an
    # injected out-of-memory; each job is then retried alone and all four finish.
    s = harness.Server(max_batch=4, max_batch_delay_ms=2000,
                       model_yaml="    inject_oom_at_step: 1\n")
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(harness.client.generate, s.stub,
                                   harness.request(steps=2, seed=i), timeout=120)
                       for i in range(4)]
            for f in futures:
                data, _, _ = f.result()
                harness.decode_image(data)
    finally:
        assert s.stop() == 0

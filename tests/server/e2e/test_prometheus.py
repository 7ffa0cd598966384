"""A real Prometheus server (Debian's /usr/bin/prometheus, on loopback) scrapes our /metrics
every second; its query API returns our latency histogram."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

import harness

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def test_metrics_text(server):
    harness.client.generate(server.stub, harness.request(), timeout=60)
    text = get(f"http://127.0.0.1:{server.metrics_port}/metrics")
    for name in ("grat_requests_total", "grat_queue_depth", "grat_queue_wait_seconds_bucket",
                 "grat_time_to_first_step_seconds_bucket", "grat_step_seconds_bucket",
                 "grat_request_latency_seconds_bucket", "grat_batch_size_bucket",
                 "grat_gpu_memory_bytes"):
        assert name in text, name
    assert 'grat_requests_total{model="flux-tiny",outcome="ok"}' in text
    assert 'le="600"' in text  # buckets reach minutes


@pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="prometheus not installed")
def test_prometheus_scrapes_latency_histogram(server):
    port = harness.free_port()
    work = tempfile.mkdtemp(prefix="prom_", dir=harness.TMP_ROOT)
    cfg = os.path.join(work, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: grat\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{server.metrics_port}']\n")
    log = open(os.path.join(work, "prometheus.log"), "wb")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                             f"--storage.tsdb.path={os.path.join(work, 'data')}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for i in range(3):
            harness.client.generate(server.stub, harness.request(seed=i), timeout=60)
        base = f"http://127.0.0.1:{port}/api/v1/query?query="
        found = None
        t0 = time.time()
        while time.time() - t0 < 60 and not found:
            time.sleep(1)
            try:
                q = urllib.parse.quote('grat_request_latency_seconds_count{model="flux-tiny"}')
                r = json.loads(get(base + q))
                if r["status"] == "success" and r["data"]["result"]:
                    v = float(r["data"]["result"][0]["value"][1])
                    if v >= 3:
                        found = r
            except OSError:
                pass
        assert found, open(os.path.join(work, "prometheus.log")).read()[-3000:]
        q = urllib.parse.quote(
            'histogram_quantile(0.5, sum by (le) (grat_request_latency_seconds_bucket))')
        r = json.loads(get(base + q))
        assert r["status"] == "success" and r["data"]["result"], r
        assert 0 < float(r["data"]["result"][0]["value"][1]) < 600
        r = json.loads(get(f"http://127.0.0.1:{port}/api/v1/targets"))
        (target,) = r["data"]["activeTargets"]
        assert target["health"] == "up", target
    finally:
        prom.terminate()
        prom.wait(30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def test_slow_connections_do_not_block_scrapes():
    """20 connections that drip one header byte every 1.5 s: a normal scrape still answers
    within 1 s, and stopping the server is not held up by them."""
    import socket
    import threading

    s = harness.Server()
    stop = threading.Event()
    socks = []
    try:
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", s.metrics_port), timeout=5)
            c.sendall(b"G")
            socks.append(c)

        def drip():
            while not stop.wait(1.5):
                for c in socks:
                    try:
                        c.sendall(b"E")
                    except OSError:
                        pass
        t = threading.Thread(target=drip, daemon=True)
        t.start()
        time.sleep(2)  # the slow ones are connected and mid-request
        for _ in range(3):
            t0 = time.monotonic()
            text = get(f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=5)
            assert time.monotonic() - t0 < 1.0
            assert "grat_queue_depth" in text
        t0 = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - t0 < 10, "shutdown held up by slow metrics connections"
    finally:
        stop.set()
        for c in socks:
            c.close()
        if s.alive():
            s.stop()

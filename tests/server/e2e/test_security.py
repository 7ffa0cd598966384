"""TLS, mTLS and API keys end to end, with certificates made here by openssl: plaintext
clients refused by a TLS server, client certificates required under mTLS, missing / wrong /
revoked (SIGHUP) keys UNAUTHENTICATED, per-tenant priority ceiling, cost ceiling and
concurrent-job quota, cross-tenant cancel refused, health open without a key, reflection off,
and gratctl / the Python client with --tls --ca --token."""
import os
import signal
import subprocess
import threading
import time

import grpc
import pytest

import harness
from harness import pb2, pb2_grpc

KEYS = {"alpha": "alpha-key-0123456789", "beta": "beta-key-9876543210",
        "gamma": "gamma-key-revoke-me"}


def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a server certificate for localhost / 127.0.0.1, a client certificate, and a
    client certificate from another CA."""
    d = str(tmp_path_factory.mktemp("pki"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        sh("openssl", "req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
           "-days", "2", "-subj", f"/CN={ca}", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("rogue", "rogue-ca", "client.ext")):
        sh("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
           "-subj", f"/CN={name}", cwd=d)
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
           f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext,
           cwd=d)
    return d


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def key_table(path, tenants):
    import hashlib
    lines = ["tenants:"]
    for name, max_priority, jobs, cost in tenants:
        h = hashlib.sha256(KEYS[name].encode()).hexdigest()
        lines += [f"  - name: {name}", f"    keys_sha256: [{h}]",
                  f"    max_priority: {max_priority}", f"    max_concurrent_jobs: {jobs}",
                  f"    max_cost: {cost}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def creds(pki, token=None, client=None):
    c = grpc.ssl_channel_credentials(
        root_certificates=read(pki, "ca.crt"),
        private_key=read(pki, f"{client}.key") if client else None,
        certificate_chain=read(pki, f"{client}.crt") if client else None)
    if token:
        c = grpc.composite_channel_credentials(c, grpc.access_token_call_credentials(token))
    return c


def code_of(fn):
    err = harness.rpc_error(fn)
    return (err.code(), err.details()) if err else (grpc.StatusCode.OK, "")


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    keys = str(tmp_path_factory.mktemp("keys") / "keys.yaml")
    # alpha: priority <= 5, 1 job at a time, at most 64x64x1x2 per request; beta and gamma
    # freer.
    key_table(keys, [("alpha", 5, 1, 64 * 64 * 2), ("beta", 10, 4, 0), ("gamma", 0, 4, 0)])
    s = harness.Server(
        credentials=creds(pki),
        extra_yaml=(f"tls: {{cert: {pki}/server.crt, key: {pki}/server.key}}\n"
                    f"auth: {{api_keys_file: {keys}}}\nreflection: false\n"))
    s.keys = keys
    yield s
    assert s.alive(), s.logs()[-3000:]
    assert s.stop() == 0


def stub_for(server, pki, token=None):
    ch = grpc.secure_channel(server.address, creds(pki, token))
    return ch, pb2_grpc.GenerationStub(ch)


def test_plaintext_client_is_refused_by_a_tls_server(tls_server):
    with grpc.insecure_channel(tls_server.address) as ch:
        code, _ = code_of(lambda: harness.health_check(ch, "", timeout=3))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_health_is_open_without_a_key_and_reflection_is_off(tls_server):
    assert harness.health_check(tls_server.channel, "") == "SERVING"
    call = tls_server.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda x: x, response_deserializer=lambda x: x)
    code, _ = code_of(lambda: list(call(iter([b"\x3a\x00"]), timeout=5)))
    assert code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("token", [None, "not-a-key", KEYS["alpha"] + "x"])
def test_missing_or_wrong_key_is_unauthenticated(tls_server, pki, token):
    ch, stub = stub_for(tls_server, pki, token)
    with ch:
        for call in (lambda: harness.client.generate(stub, harness.request(), timeout=30),
                     lambda: stub.ListModels(pb2.ListModelsRequest(), timeout=10),
                     lambda: stub.CancelJob(pb2.CancelJobRequest(job_id="0" * 16),
                                            timeout=10)):
            code, details = code_of(call)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
            assert "authorization: Bearer" in details


def test_a_valid_key_generates_over_tls(tls_server, pki):
    ch, stub = stub_for(tls_server, pki, KEYS["beta"])
    with ch:
        data, mime, fin = harness.client.generate(stub, harness.request(priority=10),
                                                  timeout=60)
        assert mime == "image/png" and harness.decode_image(data).size == (64, 64)
        assert stub.ListModels(pb2.ListModelsRequest(), timeout=10).models


def test_tenant_ceilings(tls_server, pki):
    ch, stub = stub_for(tls_server, pki, KEYS["alpha"])
    with ch:
        code, details = code_of(lambda: harness.client.generate(
            stub, harness.request(priority=6), timeout=30))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "priority 6 is above tenant alpha's max_priority 5" in details
        err = harness.rpc_error(
            lambda: harness.client.generate(stub, harness.request(steps=3), timeout=30))
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("request cost width x height x frames x steps = 64 x 64 x 1 x 3 = 12288 is over "
                "tenant alpha's max_cost 8192") in err.details()
        assert harness.error_details(err)["reason"] == "TENANT_QUOTA_EXCEEDED"
        # Within its ceilings it is served.
        harness.client.generate(stub, harness.request(priority=5), timeout=60)


def test_concurrent_job_quota_and_cross_tenant_cancel(tls_server, pki):
    ach, alpha = stub_for(tls_server, pki, KEYS["alpha"])
    bch, beta = stub_for(tls_server, pki, KEYS["beta"])
    with ach, bch:
        # alpha's one slot: a long job (big enough to run for a while, within its cost? no:
        # alpha's cost ceiling is 64x64x2, so hold the slot with a 2-step job queued behind
        # beta's long one).
        long_req = harness.request(width=256, height=256, steps=40)
        events = []
        started = threading.Event()

        def run_long():
            def on_event(e):
                events.append(e)
                started.set()
            code_of(lambda: harness.client.generate(beta, long_req, timeout=120,
                                                    on_event=on_event))
        t = threading.Thread(target=run_long)
        t.start()
        assert started.wait(30)
        beta_job = events[0].accepted.job_id
        # alpha cannot cancel beta's job.
        code, details = code_of(lambda: alpha.CancelJob(
            pb2.CancelJobRequest(job_id=beta_job), timeout=10))
        assert code == grpc.StatusCode.PERMISSION_DENIED, (code, details)
        assert "belongs to another tenant" in details
        # alpha's first job waits behind beta's; its second is over the quota.
        first_events, first_started = [], threading.Event()

        def run_first():
            def on_event(e):
                first_events.append(e)
                first_started.set()
            return code_of(lambda: harness.client.generate(
                alpha, harness.request(steps=2), timeout=120, on_event=on_event))
        results = []
        t2 = threading.Thread(target=lambda: results.append(run_first()))
        t2.start()
        assert first_started.wait(30)
        err = harness.rpc_error(
            lambda: harness.client.generate(alpha, harness.request(steps=2), timeout=30))
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tenant alpha has 1 jobs queued or running (max_concurrent_jobs 1)" in \
            err.details()
        # beta cancels its own job; alpha's then runs, and its slot comes back.
        assert beta.CancelJob(pb2.CancelJobRequest(job_id=beta_job), timeout=10).cancelled
        t.join(60)
        t2.join(120)
        assert results == [(grpc.StatusCode.OK, "")], results
        harness.client.generate(alpha, harness.request(steps=2), timeout=60)


def test_revoked_key_after_sighup(tls_server, pki):
    ch, stub = stub_for(tls_server, pki, KEYS["gamma"])
    with ch:
        harness.client.generate(stub, harness.request(priority=0), timeout=60)
        key_table(tls_server.keys, [("alpha", 5, 1, 64 * 64 * 2), ("beta", 10, 4, 0)])
        tls_server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "api keys reloaded" not in tls_server.logs() and time.time() < deadline:
            time.sleep(0.1)
        code, _ = code_of(lambda: harness.client.generate(stub, harness.request(), timeout=30))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # A broken file keeps the previous keys (beta still works) and says why in the log.
        with open(tls_server.keys, "w") as f:
            f.write("tenants: [oops\n")
        tls_server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "api keys not reloaded" not in tls_server.logs() and time.time() < deadline:
            time.sleep(0.1)
        assert "api keys not reloaded" in tls_server.logs()
    bch, beta = stub_for(tls_server, pki, KEYS["beta"])
    with bch:
        harness.client.generate(beta, harness.request(), timeout=60)
    key_table(tls_server.keys, [("alpha", 5, 1, 64 * 64 * 2), ("beta", 10, 4, 0)])


def test_mtls_requires_a_client_certificate_from_the_ca(pki):
    s = harness.Server(
        credentials=creds(pki, client="client"),
        extra_yaml=(f"tls: {{cert: {pki}/server.crt, key: {pki}/server.key, "
                    f"client_ca: {pki}/ca.crt}}\n"))
    try:
        data, _, _ = harness.client.generate(s.stub, harness.request(), timeout=60)
        harness.decode_image(data)
        for client in (None, "rogue"):
            with grpc.secure_channel(s.address, creds(pki, client=client)) as ch:
                code, _ = code_of(lambda: harness.health_check(ch, "", timeout=3))
                assert code == grpc.StatusCode.UNAVAILABLE, client
    finally:
        assert s.stop() == 0


def test_gratctl_and_python_client_with_tls_and_token(tls_server, pki, tmp_path):
    base = [harness.GRATCTL_BIN, "--server", f"localhost:{tls_server.port}",
            "--ca", f"{pki}/ca.crt"]
    out = tmp_path / "fox.png"
    r = subprocess.run(base + ["--token", KEYS["beta"], "generate", "--prompt", "a fox",
                               "--width", "64", "--height", "64", "--steps", "2",
                               "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    harness.decode_image(out.read_bytes())
    r = subprocess.run(base + ["models"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "UNAUTHENTICATED" in r.stderr + r.stdout
    script = os.path.join(harness.REPO, "clients", "python", "generate.py")
    out2 = tmp_path / "fox2.png"
    r = subprocess.run(["python3", script, "--server", f"localhost:{tls_server.port}",
                        "--ca", f"{pki}/ca.crt", "--token", KEYS["beta"], "--prompt", "a fox",
                        "--width", "64", "--height", "64", "--steps", "2", "--out", str(out2)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    harness.decode_image(out2.read_bytes())


def test_plaintext_on_a_network_address_must_be_asked_for(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"listen: \"0.0.0.0:0\"\nmodels:\n  - {{name: m, bundle: {harness.TINY_BUNDLE}}}\n")
    r = subprocess.run([harness.SERVER_BIN, "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "config key 'tls'" in r.stderr, r.stderr
    cfg.write_text(f"listen: \"0.0.0.0:0\"\ntls: {{plaintext: true}}\n"
                   f"models:\n  - {{name: m, bundle: {harness.TINY_BUNDLE}}}\n")
    r = subprocess.run([harness.SERVER_BIN, "--config", str(cfg), "--check-config"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr

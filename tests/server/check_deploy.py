"""deploy/ stays consistent: the k8s manifests parse, the Grafana dashboard queries only
metrics the server exports, their probes use gRPC health on the
served port, the ConfigMap's config and config.example.yaml pass `grat_server
--check-config`, and promtool accepts the Prometheus rules."""
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

repo, server_bin = sys.argv[1], sys.argv[2]
deploy = os.path.join(repo, "deploy")

docs = list(yaml.safe_load_all(open(os.path.join(deploy, "k8s", "grat-server.yaml"))))
kinds = {d["kind"]: d for d in docs}
assert set(kinds) == {"ConfigMap", "Deployment", "Service"}, kinds.keys()
(container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
    assert container[probe]["grpc"]["port"] == 50051, probe
cfg = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"])
assert cfg["listen"].endswith(":50051") and cfg["metrics_listen"].endswith(":9464")
# Liveness must not follow the drain; readiness must.
assert container["livenessProbe"]["grpc"]["service"] == "grat.liveness"
assert container["readinessProbe"]["grpc"]["service"] == ""
# The grace period covers the drain plus one long step, decode and encode (docs/security.md).
grace = kinds["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
assert grace >= cfg["drain_timeout_s"] + 50, (grace, cfg["drain_timeout_s"])

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "config.yaml")
    with open(path, "w") as f:
        f.write(kinds["ConfigMap"]["data"]["config.yaml"])
    for config in (path, os.path.join(deploy, "config.example.yaml")):
        r = subprocess.run([server_bin, "--check-config", "--config", config],
                           capture_output=True, text=True)
        assert r.returncode == 0, (config, r.stdout, r.stderr)
        print(r.stdout, end="")
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("models:\n  - {name: a, bundle: x, max_batch: 0}\n")
    r = subprocess.run([server_bin, "--check-config", "--config", bad], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "models[0].max_batch" in r.stderr, r.stderr

import json
import re

dash = json.load(open(os.path.join(deploy, "grafana", "gratserve.json")))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
metrics = {"grat_requests_total", "grat_queue_depth", "grat_queue_wait_seconds_bucket",
           "grat_time_to_first_step_seconds_bucket", "grat_step_seconds_sum",
           "grat_step_seconds_count", "grat_request_latency_seconds_bucket",
           "grat_batch_size_sum", "grat_batch_size_count", "grat_gpu_memory_bytes"}
used = {m for e in exprs for m in re.findall(r"grat_[a-z_]+", e)}
assert used <= metrics, used - metrics
assert {"grat_request_latency_seconds_bucket", "grat_queue_depth"} <= used

promtool = shutil.which("promtool")
if promtool:
    subprocess.run([promtool, "check", "rules", os.path.join(deploy, "prometheus", "rules.yaml")],
                   check=True)
print("deploy ok")

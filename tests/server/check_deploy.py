"""deploy/ stays consistent: the k8s manifests (kustomize base, variant multi's autoscaling)
parse and hang together (selectors, ports, volumes, the locked-down pod, metrics reachable only
from monitoring, the HPA's metric served by the adapter rule from one the server exports),
their probes use gRPC health on the served port, the ConfigMap's config, the container image's
default config and config.example.yaml pass `grat_server --check-config` and the in-image ones
name bundles where the image has them (its tiny bundles) or its /models volume, the Grafana
dashboard queries only metrics the server exports, and promtool accepts the Prometheus rules.
(Schemas, lint, the rendered variants and the Envoy front: tests/container/lint_deploy.py.)"""
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

repo, server_bin = sys.argv[1], sys.argv[2]
deploy = os.path.join(repo, "deploy")

docs = list(yaml.safe_load_all(open(os.path.join(deploy, "k8s", "base", "grat-server.yaml"))))
kinds = {d["kind"]: d for d in docs if d["kind"] != "Service"}
services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
assert set(kinds) == {"ConfigMap", "Deployment", "PersistentVolumeClaim", "NetworkPolicy",
                      "ServiceMonitor"}, kinds.keys()
assert set(services) == {"grat-server", "grat-server-headless"}, services.keys()
assert services["grat-server-headless"]["spec"]["clusterIP"] == "None"
pod = kinds["Deployment"]["spec"]["template"]
labels = pod["metadata"]["labels"]
spec = pod["spec"]
(container,) = spec["containers"]
# Locked down: non-root, read-only root filesystem (writable /tmp only), no capabilities, no
# privilege escalation, RuntimeDefault seccomp, no service-account token.
assert spec["automountServiceAccountToken"] is False
assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
sc = container["securityContext"]
assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
assert sc["capabilities"]["drop"] == ["ALL"]
mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in spec["volumes"]}
assert "emptyDir" in volumes[mounts["/tmp"]]
assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == \
    kinds["PersistentVolumeClaim"]["metadata"]["name"]
assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
# Every Service, the NetworkPolicy, the ServiceMonitor and (autoscaling.yaml) the PDB select
# these pods.
for sel in [sv["spec"]["selector"] for sv in services.values()] + [
        kinds["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]]:
    assert sel.items() <= labels.items(), sel
# Metrics only from the monitoring namespace; gRPC open.
rules = kinds["NetworkPolicy"]["spec"]["ingress"]
by_port = {r["ports"][0]["port"]: r for r in rules}
assert "from" not in by_port[50051]
assert by_port[9464]["from"][0]["namespaceSelector"]["matchLabels"] == {
    "kubernetes.io/metadata.name": "monitoring"}
port_names = {p["name"] for p in services["grat-server"]["spec"]["ports"]}
assert {e["port"] for e in kinds["ServiceMonitor"]["spec"]["endpoints"]} <= port_names
for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
    assert container[probe]["grpc"]["port"] == 50051, probe
cfg = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"])
assert cfg["listen"].endswith(":50051") and cfg["metrics_listen"].endswith(":9464")
# Bundles in the pod: the image's tiny ones (scripts/container_stage.sh puts them there) or the
# PVC mounted at /models; the same for the image's default config, which serves only the tiny
# ones so the image runs without a volume.
image_cfg = yaml.safe_load(open(os.path.join(deploy, "container", "config.yaml")))
assert image_cfg["listen"].endswith(":50051") and image_cfg["metrics_listen"].endswith(":9464")
for m in cfg["models"]:
    assert m["bundle"].startswith(("/models/", "/opt/gratserve/bundles/")), m
assert {m["bundle"] for m in image_cfg["models"]} == {
    "/opt/gratserve/bundles/flux-shapes", "/opt/gratserve/bundles/hunyuan-video-tiny"}
stage = open(os.path.join(repo, "scripts", "container_stage.sh")).read()
assert '"$stage/opt/gratserve/bundles/"' in stage and "deploy/container/config.yaml" in stage
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
    for config in (path, os.path.join(deploy, "config.example.yaml"),
                   os.path.join(deploy, "container", "config.yaml")):
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

# Variant "multi": the HPA scales this Deployment on a metric the adapter rule serves from one
# the server exports; the PDB selects these pods.
scaling = {d["kind"]: d for d in yaml.safe_load_all(
    open(os.path.join(deploy, "k8s", "multi", "autoscaling.yaml")))}
assert set(scaling) == {"HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"}
hpa = scaling["HorizontalPodAutoscaler"]["spec"]
assert hpa["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
(metric,) = hpa["metrics"]
adapter = yaml.safe_load(scaling["ConfigMap"]["data"]["rules.yaml"])["rules"]
served = {r["name"]["as"] for r in adapter}
assert metric["pods"]["metric"]["name"] in served
for r in adapter:
    assert re.match(r"(grat_[a-z_]+)", r["seriesQuery"]).group(1) == "grat_queue_depth"
assert scaling["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()

dash = json.load(open(os.path.join(deploy, "grafana", "gratserve.json")))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
metrics = {"grat_requests_total", "grat_queue_depth", "grat_queue_wait_seconds_bucket",
           "grat_time_to_first_step_seconds_bucket", "grat_step_seconds_sum",
           "grat_step_seconds_count", "grat_request_latency_seconds_bucket",
           "grat_batch_size_sum", "grat_batch_size_count", "grat_gpu_memory_bytes"}
used = {m for e in exprs for m in re.findall(r"grat_[a-z_]+", e)}
assert used <= metrics, used - metrics
assert {"grat_request_latency_seconds_bucket", "grat_queue_depth"} <= used

promtool = shutil.which("promtool")  # Debian's prometheus package (scripts/install_deps.sh)
assert promtool, "promtool not found: scripts/install_deps.sh installs it"
if promtool:
    subprocess.run([promtool, "check", "rules", os.path.join(deploy, "prometheus", "rules.yaml")],
                   check=True)
    # Each alert fires on the series that should fire it, and not on a healthy server.
    subprocess.run([promtool, "test", "rules", "rules_test.yaml"],
                   cwd=os.path.join(deploy, "prometheus"), check=True)
print("deploy ok")

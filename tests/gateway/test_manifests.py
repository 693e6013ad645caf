"""The shipped Kubernetes manifests and compose file: valid, and wired to each other.

Kubernetes: every document of ``docker/k8s/*.yaml`` is checked against the Kubernetes JSON
schemas bundled with ``kubernetes-validate`` (strict: an unknown or misspelt field fails), for
the oldest and newest Kubernetes it bundles, without a network (there is no cluster here for
``kubectl --dry-run``). The schemas cannot see how objects refer to each other, so the rest of
this file checks that: Services select pods that exist, the autoscaler scales a Deployment on a
metric the gateway exports, edges register through a Service that a not-yet-ready gateway
belongs to. Compose: every service it depends on exists, every variable it reads is in the
example env file, every env file it names has an example.
"""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from pice_gateway.metrics import GatewayMetrics
from pice_gateway.settings import GatewaySettings, ModelNames

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
COMPOSE = ROOT / "docker" / "compose.yaml"
# Helm values for prometheus-adapter, not a manifest.
ADAPTER_VALUES = K8S / "prometheus-adapter-values.yaml"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p != ADAPTER_VALUES)
# k3s on JetPack 6 and managed clusters of today both fall between these.
VERSIONS = [all_versions()[0], all_versions()[-1]]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> dict[str, dict[str, Any]]:
    return {
        f"{doc['kind']}/{doc['metadata']['name']}": doc for p in MANIFESTS for doc in documents(p)
    }


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must need no network: any connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("schema validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_every_manifest_file_is_checked() -> None:
    names = {p.name for p in MANIFESTS}
    assert {"pice.yaml", "vllm.yaml", "secret.example.yaml"} <= names
    kinds = sorted(all_documents())
    for expected in [
        "ConfigMap/pice-gateway",
        "DaemonSet/pice-edge",
        "Deployment/pice-gateway",
        "Deployment/pice-redis",
        "Deployment/vllm",
        "HorizontalPodAutoscaler/pice-gateway",
        "Secret/pice-secrets",
        "Service/pice-gateway",
        "Service/pice-redis",
        "Service/vllm",
    ]:
        assert expected in kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_pass_the_kubernetes_schemas(path: Path, version: str) -> None:
    for doc in documents(path):
        validate(doc, version)


def gateway_deployment() -> dict[str, Any]:
    return copy.deepcopy(all_documents()["Deployment/pice-gateway"])


@pytest.mark.parametrize(
    ("what", "breaks"),
    [
        ("a misspelt field", lambda d: d["spec"]["template"]["spec"].update(nodeselector={})),
        ("a number as a string", lambda d: d["spec"].update(replicas="two")),
        (
            "a container without a name",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
        ),
        ("no selector", lambda d: d["spec"].pop("selector")),
        (
            "an env var that is a list",
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].append(["X"]),
        ),
    ],
)
def test_a_broken_manifest_is_rejected(what: str, breaks: Any) -> None:
    doc = gateway_deployment()
    validate(doc, VERSIONS[-1])  # whole, it passes
    breaks(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(doc, VERSIONS[-1])


def test_an_autoscaler_of_the_old_api_shape_is_rejected() -> None:
    hpa = copy.deepcopy(all_documents()["HorizontalPodAutoscaler/pice-gateway"])
    # autoscaling/v2beta1's spelling, which v2 no longer has.
    hpa["spec"]["metrics"][0]["pods"] = {"metricName": "x", "targetAverageValue": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(hpa, VERSIONS[-1])


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def workloads() -> dict[str, dict[str, Any]]:
    return {k: d for k, d in all_documents().items() if d["kind"] in {"Deployment", "DaemonSet"}}


def test_every_service_selects_pods_and_their_named_ports() -> None:
    services = {k: d for k, d in all_documents().items() if d["kind"] == "Service"}
    for key, service in services.items():
        selector = service["spec"]["selector"]
        targets = [
            w for w in workloads().values()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        assert targets, f"{key} selects no pods"
        ports = {
            p.get("name")
            for w in targets
            for c in pod_spec(w)["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert isinstance(target, int) or target in ports, f"{key}: no port named {target}"
    for workload in workloads().values():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


def gateway_config() -> GatewaySettings:
    text = all_documents()["ConfigMap/pice-gateway"]["data"]["gateway.yaml"]
    return GatewaySettings.model_validate(yaml.safe_load(text))


def test_the_gateway_calls_the_vllm_service_and_has_no_static_edges() -> None:
    settings = gateway_config()
    # Static names (pice-edge-orin-1, ...) resolved to nothing: the edges register instead.
    assert settings.edges == []
    vllm = all_documents()["Service/vllm"]
    assert settings.cloud.base_url == f"http://vllm:{vllm['spec']['ports'][0]['port']}/v1"


def test_the_gateway_replicas_share_redis_and_probe_readiness() -> None:
    gateway = gateway_deployment()
    assert gateway["spec"]["replicas"] == 2
    (container,) = pod_spec(gateway)["containers"]
    env = {v["name"]: v for v in container["env"]}
    redis = all_documents()["Service/pice-redis"]
    assert env["PICE_FLEET__REDIS_URL"]["value"] == (
        f"redis://pice-redis:{redis['spec']['ports'][0]['port']}/0"
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_the_autoscaler_scales_the_gateway_on_a_metric_it_exports() -> None:
    hpa = all_documents()["HorizontalPodAutoscaler/pice-gateway"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "pice-gateway",
    }
    assert hpa["spec"]["minReplicas"] == gateway_deployment()["spec"]["replicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    # prometheus-adapter serves that name from a series the gateway's /metrics has.
    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    (rule,) = [r for r in rules if r["name"]["as"] == name]
    series = re.match(r"[a-z_]+", rule["seriesQuery"])
    assert series is not None
    exported = {
        sample.name
        for family in GatewayMetrics(ModelNames()).registry.collect()
        for sample in family.samples
    } | {
        f"{family.name}_sum"
        for family in GatewayMetrics(ModelNames()).registry.collect()
        if family.type == "histogram"
    }
    assert series[0] in exported


def test_edges_register_through_a_service_of_not_yet_ready_gateways() -> None:
    docs = all_documents()
    edge = docs["DaemonSet/pice-edge"]
    spec = pod_spec(edge)
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet", "the join URL names a Service"
    assert "pice.dev/jetson" in spec["nodeSelector"]
    (container,) = spec["containers"]
    env = {v["name"]: v for v in container["env"]}
    assert env["HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    port = container["ports"][0]["containerPort"]
    assert env["PICE_EDGE_ADVERTISE_URL"]["value"] == f"http://$(HOST_IP):{port}"
    # The variable it expands is defined before it (Kubernetes expands only earlier ones).
    names = [v["name"] for v in container["env"]]
    assert names.index("HOST_IP") < names.index("PICE_EDGE_ADVERTISE_URL")
    join = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", env["PICE_EDGE_JOIN_URL"]["value"])
    assert join is not None
    service = docs[f"Service/{join[1]}"]
    # A gateway is ready only once an edge is up, and an edge is up only once it has joined.
    assert service["spec"]["publishNotReadyAddresses"] is True
    # Headless: the name resolves to every replica (edges behind NAT dial each one).
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"app": "pice-gateway"}
    assert int(join[2]) == service["spec"]["ports"][0]["port"]
    assert "--n-gpu-layers" in container["args"]


def test_vllm_asks_for_a_gpu() -> None:
    (container,) = pod_spec(all_documents()["Deployment/vllm"])["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


# -- compose ------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_depends_only_on_its_own_services() -> None:
    services = compose()["services"]
    assert {"cloud", "redis", "gateway", "edge-1", "edge-2"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose()["volumes"], f"{name}: undeclared volume {source}"


def test_compose_reads_only_variables_of_the_example_env_file() -> None:
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / "docker" / "pice.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    assert used
    assert used <= example
    for name, service in compose()["services"].items():
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            example_path = (COMPOSE.parent / path).with_name(Path(path).name + ".example")
            assert example_path.is_file(), f"{name}: no example for {path}"


def test_compose_edges_join_the_gateway_they_start_after() -> None:
    services = compose()["services"]
    gateway_port = int(services["gateway"]["ports"][0].split(":")[-1])
    for name in ("edge-1", "edge-2"):
        env = services[name]["environment"]
        assert env["PICE_EDGE_JOIN_URL"] == f"http://gateway:{gateway_port}"
        assert env["PICE_EDGE_ADVERTISE_URL"] == f"http://{name}:8101"
        assert "gateway" in services[name]["depends_on"]
    gateway_env = services["gateway"]["environment"]
    assert gateway_env["PICE_FLEET__REDIS_URL"] == "redis://redis:6379/0"
    assert "redis" in services["gateway"]["depends_on"]


# -- images -------------------------------------------------------------------------------

DOCKERFILES = ["Dockerfile.gateway", "Dockerfile.edge", "Dockerfile.edge-l4t"]


def dockerfile(name: str) -> str:
    # Continuation lines joined, so each instruction is one line.
    return (ROOT / "docker" / name).read_text().replace("\\\n", " ")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_copy_what_exists_and_install_tracing(name: str) -> None:
    text = dockerfile(name)
    for line in text.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    (install,) = [line for line in text.splitlines() if "pip install" in line and "'." in line]
    extras = re.search(r"\[([a-z,]+)\]'", install)
    assert extras is not None, install
    assert "otel" in extras[1].split(","), f"{name} installs no otel extra"


@pytest.mark.parametrize("name", ["Dockerfile.edge", "Dockerfile.edge-l4t"])
def test_edge_images_install_the_python310_distribution(name: str) -> None:
    assert "./packaging/edge[" in dockerfile(name)


def test_the_orin_image_builds_llama_cpp_for_its_gpu() -> None:
    text = dockerfile("Dockerfile.edge-l4t")
    assert re.search(r"^ARG L4T=nvcr\.io/nvidia/l4t-jetpack:r36\.", text, re.M)
    assert '-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=87"' in text  # Orin = sm_87
    assert "--no-binary llama-cpp-python" in text
    assert "PICE_EDGE_N_GPU_LAYERS=-1" in text

"""examples/k8s: the manifests agree with the server they deploy (config loader, CLI flags,
health protocol, drain time), so the example cannot drift from the code silently."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from semroute.cli import build_parser
from semroute.config import Config, load_config

from .conftest import REPO

K8S = REPO / "examples" / "k8s"
IMAGE_REPO = "/opt/semroute"  # where the README puts this repository in the image


def _docs() -> dict[str, dict[str, Any]]:
    out = {}
    for f in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return _docs()


@pytest.fixture(scope="module")
def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (c,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def config(docs: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The ConfigMap's config, loaded with the image's paths mapped onto this checkout."""
    text = docs["ConfigMap"]["data"]["config.yaml"]
    assert f"extends: {IMAGE_REPO}/" in text
    path = tmp_path_factory.mktemp("k8s") / "config.yaml"
    path.write_text(text.replace(f"extends: {IMAGE_REPO}/", f"extends: {REPO}/"))
    return load_config(path)


def test_the_manifests_are_a_deployment_a_service_and_a_configmap(docs: dict[str, Any]) -> None:
    assert set(docs) == {"Deployment", "Service", "ConfigMap"}
    selector = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert docs["Service"]["spec"]["selector"] == selector
    assert docs["Deployment"]["spec"]["template"]["metadata"]["labels"] == selector


def test_the_container_args_are_real_serve_flags(container: dict[str, Any], docs: Any) -> None:
    args = build_parser().parse_args([*container["args"]])
    assert container["command"] == ["semroute"] and args.command == "serve"
    assert args.host == "0.0.0.0"  # the kubelet probes the pod IP
    assert args.workers == 1
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_volume = next(
        v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    )
    assert config_volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert PurePosixPath(args.config) == PurePosixPath(mounts[config_volume["name"]], "config.yaml")


def test_probes_are_grpc_health_on_the_serving_port(container: dict[str, Any], docs: Any) -> None:
    port = build_parser().parse_args(container["args"]).port
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(container[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe
        assert container[probe]["grpc"]["port"] == port, probe
        assert container[probe]["grpc"].get("service", "") == "", probe  # the overall status
    (sp,) = docs["Service"]["spec"]["ports"]
    assert sp["targetPort"] in ("grpc", port)


def test_the_config_validates_and_its_paths_are_writable_volumes(
    config: Config, container: dict[str, Any]
) -> None:
    writable = [
        PurePosixPath(m["mountPath"]) for m in container["volumeMounts"] if not m.get("readOnly")
    ]

    def on_volume(p: Path | None) -> bool:
        return p is not None and any(PurePosixPath(p).is_relative_to(w) for w in writable)

    assert config.routes and config.models  # the image's default routes, through extends
    assert on_volume(config.index_path)  # built at start: must be writable
    assert on_volume(config.admin.watch_dir) and on_volume(config.admin.staging_dir)
    # The watch dir (hence the start-up load) needs the admin side: a token from a Secret.
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env[config.admin.token_env]["valueFrom"]


def test_drain_and_probes_fit_the_grace_periods(
    config: Config, container: dict[str, Any], docs: Any
) -> None:
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    grace = config.server.grace_period_s
    # SIGTERM -> NOT_SERVING -> drain for grace_period_s -> exit, before the SIGKILL.
    assert spec["terminationGracePeriodSeconds"] >= grace + 5
    # Liveness sees NOT_SERVING while draining: it must not restart a draining pod.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > grace


def test_resources_fit_a_two_core_node(config: Config, container: dict[str, Any]) -> None:
    requests = container["resources"]["requests"]
    cpu = str(requests["cpu"])
    millicores = int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
    assert 1000 <= millicores < 2000  # a 2-core node keeps some for the kubelet
    assert config.server.inference_threads <= 2
    assert "memory" in requests and "memory" in container["resources"]["limits"]

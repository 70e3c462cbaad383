"""The Kubernetes manifests in deploy/: yamllint-clean, valid against the Kubernetes schemas
(kubernetes-validate bundles them, so this runs offline) and consistent with the server and
with each other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from server.app import SERVICE_NAME
from server.config import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
YAMLLINT = Path(sys.executable).parent / "yamllint"
YAMLLINT_CONFIG = REPO / ".yamllint"

# Native gRPC probes are GA from 1.27; 1.37 is the newest schema kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.27", "1.37")

MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
KUSTOMIZATION = DEPLOY / "kustomization.yaml"
EXAMPLE_SECRET = DEPLOY / "secret.example.yaml"
RESOURCE_FILES = [path for path in MANIFESTS if path != KUSTOMIZATION]

Manifest = dict[str, Any]


def load(path: Path) -> list[Manifest]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in documents), path.name
    return documents


def resources() -> list[Manifest]:
    return [doc for path in RESOURCE_FILES for doc in load(path)]


def one(kind: str) -> Manifest:
    found = [doc for doc in resources() if doc["kind"] == kind]
    assert len(found) == 1, f"deploy/ should hold one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> Manifest:
    return one("Deployment")


@pytest.fixture(scope="module")
def pod(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: Manifest) -> Manifest:
    assert len(pod["containers"]) == 1
    found: Manifest = pod["containers"][0]
    return found


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


@pytest.fixture(scope="module")
def secret() -> Manifest:
    return one("Secret")


def grpc_port(container: Manifest) -> int:
    ports = [port for port in container["ports"] if port.get("name") == "grpc"]
    assert len(ports) == 1, "the container should name one port `grpc`"
    port: int = ports[0]["containerPort"]
    return port


def env_value(container: Manifest, name: str) -> Manifest:
    found = [entry for entry in container.get("env", []) if entry["name"] == name]
    assert len(found) == 1, f"the container should set {name} once"
    entry: Manifest = found[0]
    return entry


def test_manifests_exist() -> None:
    kinds = sorted(doc["kind"] for doc in resources())
    expected = ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"]
    assert kinds == expected


@pytest.mark.slow
def test_yamllint_strict() -> None:
    assert YAMLLINT.exists(), "yamllint is missing: make venv-dev"
    result = subprocess.run(
        [str(YAMLLINT), "--strict", "-c", str(YAMLLINT_CONFIG), str(DEPLOY), str(YAMLLINT_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", RESOURCE_FILES, ids=lambda path: path.name)
def test_valid_against_kubernetes_schema(path: Path, version: str) -> None:
    for document in load(path):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name} ({document['kind']}) on {version}: {error.message}")


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = load(KUSTOMIZATION)
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    expected = {path.name for path in RESOURCE_FILES if path != EXAMPLE_SECRET}
    assert set(listed) == expected


def test_probes_are_native_grpc_on_the_serving_port(container: Manifest) -> None:
    port = grpc_port(container)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert set(container[probe]) & {"grpc", "exec", "httpGet", "tcpSocket"} == {"grpc"}
        assert container[probe]["grpc"]["port"] == port, probe
    # Liveness on the overall health, which stays SERVING under load; readiness on the
    # planning service, which is NOT_SERVING while its solver processes are saturated.
    assert container["livenessProbe"]["grpc"].get("service", "") == ""
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "warm-up takes time"


def test_listens_on_the_container_port(container: Manifest, config: dict[str, str]) -> None:
    listen = config.get("PLANNER_LISTEN", Settings.model_fields["listen"].default)
    assert listen.rsplit(":", 1)[1] == str(grpc_port(container))


def test_security_context(pod: Manifest, container: Manifest) -> None:
    pod_context, context = pod["securityContext"], container["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == 10001, "the Dockerfile's `planner` user"
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == pod_context["runAsUser"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_writable_directories_are_empty_dirs(pod: Manifest, container: Manifest) -> None:
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    for path in ("/tmp", "/var/lib/planner"):  # forkserver socket; working directory
        assert path in mounts, f"{path} should be writable under readOnlyRootFilesystem"
        assert "emptyDir" in volumes[mounts[path]]


def test_resources(container: Manifest) -> None:
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, kind


def test_config_keys_are_settings(config: dict[str, str]) -> None:
    fields = set(Settings.model_fields)
    for key in config:
        assert key.startswith("PLANNER_"), key
        assert key.removeprefix("PLANNER_").lower() in fields, f"{key} is no setting"
    # Credentials come from the Secret, never from the ConfigMap.
    assert "PLANNER_DATABASE_URL" not in config
    assert "PLANNER_TOKENS_FILE" not in config


def test_config_values_parse(config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.solver_processes >= 1


def test_env_names_are_settings(container: Manifest) -> None:
    fields = set(Settings.model_fields)
    for entry in container["env"]:
        assert entry["name"].removeprefix("PLANNER_").lower() in fields, entry["name"]


def test_service_links_off(pod: Manifest) -> None:
    """The Service `planner` would otherwise inject PLANNER_SERVICE_HOST, PLANNER_PORT, ...
    into the settings' PLANNER_ namespace."""
    assert pod["enableServiceLinks"] is False


def test_database_url_and_tokens_from_the_secret(
    pod: Manifest, container: Manifest, config: dict[str, str], secret: Manifest
) -> None:
    name = secret["metadata"]["name"]
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))

    reference = env_value(container, "PLANNER_DATABASE_URL")["valueFrom"]["secretKeyRef"]
    assert reference["name"] == name
    assert reference["key"] in keys

    tokens_file = Path(env_value(container, "PLANNER_TOKENS_FILE")["value"])
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == str(tokens_file.parent)]
    assert len(mounts) == 1, "PLANNER_TOKENS_FILE should lie in a mounted directory"
    assert mounts[0].get("readOnly") is True
    source = volumes[mounts[0]["name"]]["secret"]
    assert source["secretName"] == name
    if "items" in source:  # only the listed keys are projected, under their paths
        paths = {item["path"]: item["key"] for item in source["items"]}
        assert paths[tokens_file.name] in keys
    else:
        assert tokens_file.name in keys


def test_service_selects_the_pods(deployment: Manifest, container: Manifest) -> None:
    service = one("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == grpc_port(container)
    assert port["targetPort"] in ("grpc", grpc_port(container))
    assert port["appProtocol"] == "grpc"


def test_deployment_selects_its_pods(deployment: Manifest) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2


def test_pdb_selects_the_pods(deployment: Manifest) -> None:
    pdb = one("PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert set(pdb["spec"]["selector"]) == {"matchLabels"}
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_termination_grace_covers_shutdown(pod: Manifest, config: dict[str, str]) -> None:
    default = Settings.model_fields["shutdown_grace_seconds"].default
    grace = float(config.get("PLANNER_SHUTDOWN_GRACE_SECONDS", default))
    assert pod["terminationGracePeriodSeconds"] > grace + 2

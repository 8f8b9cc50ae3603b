"""The Kubernetes manifests of ``deploy/kubernetes``, validated offline.

Every resource of the base and of each overlay is validated (strict: no unknown field) against the
Kubernetes OpenAPI schemas that ``kubernetes-validate`` bundles, for the oldest and newest Kubernetes
versions the deployment guide supports. Then what the schemas cannot see: the probes point at the
contract's ``/readyz`` and ``/healthz`` on the container's port, every container's arguments are a
``dxassist`` command line the CLI accepts, every Secret, ConfigMap, port and selector that something
refers to exists, the settings are real settings that the server accepts, and the network policies deny
everything that no component needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from _kustomize import load_documents, render

from inference.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
TREES = ("base", "overlays/production", "overlays/gpu")
# The oldest Kubernetes still supported upstream when this was written, and the newest schema bundled.
VERSIONS = ("1.32.0", "1.37.0")
WORKLOADS = ("Deployment", "Job")


def _rendered(tree: str) -> list[dict[str, Any]]:
    return render(KUBE / tree)


def _secrets() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in load_documents(KUBE / "secrets.example.yaml")}


def _pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def _by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def _containers(resources: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for resource in resources:
        if resource["kind"] in WORKLOADS:
            for container in _pod_spec(resource)["containers"]:
                yield resource["metadata"]["name"], container


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("tree", TREES)
def test_every_resource_validates_against_the_kubernetes_schemas(tree: str, version: str) -> None:
    resources = _rendered(tree) + list(_secrets().values())
    assert len(resources) >= 15
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(
                f"{tree}: {resource['kind']}/{resource['metadata']['name']} is invalid for {version}: {e}"
            )


def test_a_broken_manifest_is_refused_by_the_validation() -> None:
    """The validation can fail: a misspelt field and a wrong type are both refused."""
    server = _by_kind(_rendered("base"), "Deployment")["dxassist-server"]
    misspelt = {**server, "spec": {**server["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, VERSIONS[-1], strict=True)
    wrong_type = {**server, "spec": {**server["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("tree", TREES)
def test_the_server_is_probed_on_the_contracts_health_routes(tree: str) -> None:
    server = _by_kind(_rendered(tree), "Deployment")["dxassist-server"]
    (container,) = _pod_spec(server)["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    # The server listens where the probes and the Service look.
    args = container["args"]
    assert args[0] == "serve" and int(args[args.index("--port") + 1]) == ports["http"]
    # One server process per core the pod requests.
    assert int(args[args.index("--workers") + 1]) == int(container["resources"]["requests"]["cpu"])
    assert server["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("tree", TREES)
def test_every_container_runs_a_dxassist_command_the_cli_accepts(tree: str) -> None:
    parser = build_parser()
    commands = set()
    for name, container in _containers(_rendered(tree)):
        if container.get("command", ["dxassist"]) != ["dxassist"]:
            assert container["command"] == ["mlflow"], name
            assert "server" in container["args"] and "--serve-artifacts" in container["args"]
            continue
        args = parser.parse_args(container["args"])
        commands.add(args.command)
    assert commands == {"serve", "listen", "migrate"}


@pytest.mark.parametrize("tree", TREES)
def test_everything_referred_to_exists(tree: str) -> None:
    resources = _rendered(tree)
    secrets = _secrets()
    configmaps = _by_kind(resources, "ConfigMap")
    claims = _by_kind(resources, "PersistentVolumeClaim")
    deployments = _by_kind(resources, "Deployment")
    for name, container in _containers(resources):
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in configmaps, name
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], (name, ref)
    for resource in resources:
        if resource["kind"] not in WORKLOADS:
            continue
        pod = _pod_spec(resource)
        assert pod["automountServiceAccountToken"] is False
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for volume in volumes.values():
            if "secret" in volume:
                data = secrets[volume["secret"]["secretName"]]["stringData"]
                assert all(item["key"] in data for item in volume["secret"]["items"])
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for container in pod["containers"]:
            assert all(mount["name"] in volumes for mount in container.get("volumeMounts", []))
    for service in _by_kind(resources, "Service").values():
        selector = service["spec"]["selector"]
        targets = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in _pod_spec(targets[0])["containers"] for p in c["ports"]}
        assert all(port["targetPort"] in port_names for port in service["spec"]["ports"])
    for hpa in _by_kind(resources, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for ingress in _by_kind(resources, "Ingress").values():
        assert ingress["spec"]["tls"][0]["secretName"] in secrets
    for deployment in deployments.values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def _known_settings() -> set[str]:
    """Every ``DXASSIST_`` setting: the flat names of :class:`inference.config.Settings` and its groups."""
    from inference.config import setting_names

    return {f"DXASSIST_{name.upper()}" for name in setting_names()}


@pytest.mark.parametrize("tree", TREES)
def test_the_settings_are_real_and_accepted(tree: str, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = _rendered(tree)
    config = _by_kind(resources, "ConfigMap")["dxassist-config"]["data"]
    names = set(config) | {
        variable["name"] for _, container in _containers(resources) for variable in container.get("env", [])
    }
    unknown = {n for n in names if n.startswith("DXASSIST_")} - _known_settings()
    assert not unknown, f"settings that dxassist does not read: {sorted(unknown)}"
    for key in list(os.environ):
        if key.startswith("DXASSIST_"):
            monkeypatch.delenv(key)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DXASSIST_DATABASE_URL", "postgresql+psycopg://dxassist@db.hospital.example/dxassist")
    monkeypatch.setenv(
        "DXASSIST_DESTINATIONS", _secrets()["dxassist-destinations"]["stringData"]["destinations.json"]
    )
    from inference.config import Settings

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"
    assert settings.tracking_uri.startswith("http://dxassist-mlflow:")
    assert [node.facility for node in settings.dimse.dimse_nodes] == ["hospital-a"]
    assert [destination.kind for destination in settings.delivery.destinations] == ["stowrs"]


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    for tree in TREES:
        for resource in _rendered(tree):
            if resource["kind"] not in WORKLOADS:
                continue
            pod = _pod_spec(resource)
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"]["drop"] == ["ALL"]
                assert "memory" in container["resources"]["limits"]


def _selected(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return wanted.items() <= labels.items()


def test_network_policies_deny_all_but_what_each_component_needs() -> None:
    resources = _rendered("overlays/production")
    policies = list(_by_kind(resources, "NetworkPolicy").values())
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and deny[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]
    for policy in policies:
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            # An empty peer list or a missing port list would open the pod to everyone or every port.
            assert rule.get("from") or rule.get("to"), policy["metadata"]["name"]
            assert rule.get("ports"), policy["metadata"]["name"]
            for peer in rule.get("from", []) + rule.get("to", []):
                assert peer != {} and peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0"

    def allowed_ports(component: str, direction: str) -> set[int]:
        labels = {"app.kubernetes.io/name": "dxassist", "app.kubernetes.io/component": component}
        ports: set[int] = set()
        for policy in policies:
            if policy["spec"]["podSelector"] != {} and _selected(policy, labels):
                for rule in policy["spec"].get(direction, []):
                    ports.update(port["port"] for port in rule["ports"])
        return ports

    assert allowed_ports("server", "ingress") == {8000}
    assert allowed_ports("listener", "ingress") == {11112, 9464}  # DICOM, and its /metrics
    assert allowed_ports("mlflow", "ingress") == {5000}
    assert allowed_ports("migrate", "ingress") == set()
    assert allowed_ports("server", "egress") == {5432, 5000, 443, 104, 11112, 53}
    assert allowed_ports("migrate", "egress") == {5432, 53}
    assert allowed_ports("mlflow", "egress") == {5432, 53}
    # Every workload is selected by a policy of its own besides the default deny.
    for resource in resources:
        if resource["kind"] in WORKLOADS:
            labels = resource["spec"]["template"]["metadata"]["labels"]
            assert any(p["spec"]["podSelector"] != {} and _selected(p, labels) for p in policies)


def test_the_overlays_change_what_they_say() -> None:
    base = _rendered("base")
    production = _rendered("overlays/production")
    gpu = _rendered("overlays/gpu")
    assert all(r["metadata"]["namespace"] == "dxassist" for r in production + gpu)
    assert _by_kind(production, "HorizontalPodAutoscaler")["dxassist-server"]["spec"]["minReplicas"] == 3
    (container,) = _pod_spec(_by_kind(gpu, "Deployment")["dxassist-server"])["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == "registry.example.org/dxassist:0.1.0-gpu"
    # The patch merges: the probes and mounts of the base survive it.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {m["name"] for m in container["volumeMounts"]} == {"home", "keys", "tmp"}
    assert _by_kind(gpu, "ConfigMap")["dxassist-config"]["data"]["DXASSIST_EXECUTION_PROVIDER"] == "cuda"
    assert _by_kind(base, "ConfigMap")["dxassist-config"]["data"]["DXASSIST_EXECUTION_PROVIDER"] == "cpu"


@pytest.mark.parametrize("tree", TREES)
def test_several_listener_pods_share_their_spool_and_group_studies_in_the_record(tree: str) -> None:
    resources = _rendered(tree)
    listener = _by_kind(resources, "Deployment")["dxassist-listener"]
    assert listener["spec"]["replicas"] > 1
    pod = _pod_spec(listener)
    (container,) = pod["containers"]
    env = {variable["name"]: variable.get("value") for variable in container.get("env", [])}
    # Without database grouping, each pod would analyse the part of a study it received.
    assert env["DXASSIST_DIMSE_GROUPING"] == "database"
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    spool_volume = {volume["name"]: volume for volume in pod["volumes"]}[mounts[env["DXASSIST_DIMSE_SPOOL"]]]
    claim = _by_kind(resources, "PersistentVolumeClaim")[spool_volume["persistentVolumeClaim"]["claimName"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # Probed on the listener's own /healthz (the DICOM acceptor and the analysis loop), not by TCP on the
    # DICOM port, which a stopped acceptor still answers and DICOM TLS logs as a failed handshake.
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    arguments = build_parser().parse_args(container["args"])
    assert ports["metrics"] == arguments.metrics_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}

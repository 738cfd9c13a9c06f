"""deployments/kubernetes/: every manifest valid against the Kubernetes API schemas (offline,
kubernetes-validate, strict: an unknown field is an error), and wired like the compose file:
real settings, real subcommands, probes on the ops ports, secrets where they are needed."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from realchat.cli import build_parser
from realchat.config import Settings
from tests.support.deployment import settings_field_exists

KUBERNETES = Path(__file__).resolve().parents[2] / "deployments" / "kubernetes"
BASE = KUBERNETES / "base"
#: The oldest Kubernetes the manifests are written for (autoscaling/v2, policy/v1 PDBs).
VERSION = "1.30.0"
SECRETS = {"realchat-secrets": {"database-url", "redis-url", "chat-internal-token"}}
SERVICES = {"gateway", "chat-service", "auth-service", "outbox-publisher", "presence"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization() -> dict[str, Any]:
    [found] = documents(BASE / "kustomization.yaml")
    return found


def manifests() -> list[dict[str, Any]]:
    return [d for name in kustomization()["resources"] for d in documents(BASE / name)]


def errors(manifest: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(manifest, VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc)
    return None


def workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, container) of every Deployment and Job."""
    for m in manifests():
        if m["kind"] in ("Deployment", "Job"):
            for container in m["spec"]["template"]["spec"]["containers"]:
                yield m["metadata"]["name"], container


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.parametrize(
    "manifest", manifests(), ids=lambda m: f"{m['kind']}/{m['metadata']['name']}"
)
def test_every_manifest_is_valid_against_the_api_schema(manifest: dict[str, Any]) -> None:
    assert errors(manifest) is None


def test_a_broken_manifest_is_caught() -> None:
    [deployment] = [m for m in manifests() if m["metadata"]["name"] == "realchat-gateway"
                    and m["kind"] == "Deployment"]  # fmt: skip
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["replica"] = 3  # an unknown field: dropped silently by a lenient check
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    nameless = copy.deepcopy(deployment)
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]  # a required field
    assert errors(misspelt)
    assert errors(wrong_type)
    assert errors(nameless)


def test_every_variable_is_a_real_setting() -> None:
    names = set(next(m for m in manifests() if m["kind"] == "ConfigMap")["data"])
    for _, container in workloads():
        names |= {e["name"] for e in container.get("env", [])}
    assert [n for n in sorted(names) if not settings_field_exists(n)] == []


def test_every_container_runs_a_realchat_subcommand() -> None:
    parser = build_parser()
    commands = set()
    for name, container in workloads():
        try:
            commands.add(parser.parse_args(container["args"]).command)
        except SystemExit:
            pytest.fail(f"{name}: `realchat {' '.join(container['args'])}` is not a command")
    assert commands == SERVICES | {"migrate", "topics"}


def test_probes_hit_the_ops_port_of_each_service() -> None:
    config = next(m for m in manifests() if m["kind"] == "ConfigMap")["data"]
    ops_ports = {
        "gateway": config["REALCHAT_GATEWAY__OPS_PORT"],
        "chat-service": config["REALCHAT_CHAT__OPS_PORT"],
        "auth-service": config["REALCHAT_AUTH__OPS_PORT"],
        "outbox-publisher": config["REALCHAT_OUTBOX__OPS_PORT"],
        "presence": config["REALCHAT_PRESENCE__OPS_PORT"],
    }
    for name, container in workloads():
        command = container["args"][0]
        if command not in SERVICES:
            continue
        ports = {p["name"]: str(p["containerPort"]) for p in container["ports"]}
        assert ports["ops"] == ops_ports[command], name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}


def test_secrets_come_from_secrets_and_only_auth_reads_the_private_key() -> None:
    for name, container in workloads():
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["key"] in SECRETS[ref["name"]], name
            else:
                value = str(env.get("value", ""))
                assert "change-me" not in value
                assert "://" not in value or "@" not in value, f"{name}: a credential in a URL"
        private = any(
            e["name"] == "REALCHAT_AUTH__PRIVATE_KEY_FILE" for e in container.get("env", [])
        )
        assert private == (container["args"] == ["auth-service"]), name
    for m in manifests():
        if m["kind"] == "Deployment":
            for volume in m["spec"]["template"]["spec"].get("volumes", []):
                secret = volume.get("secret")
                if secret and m["metadata"]["name"] != "realchat-auth":
                    assert [i["key"] for i in secret["items"]] == ["auth-signing-key.pub.pem"]


def test_gateways_drain_within_their_grace_and_scale_on_connections() -> None:
    by_kind = {(m["kind"], m["metadata"]["name"]): m for m in manifests()}
    gateway = by_kind[("Deployment", "realchat-gateway")]["spec"]["template"]["spec"]
    config = next(m for m in manifests() if m["kind"] == "ConfigMap")["data"]
    drain = float(config["REALCHAT_GATEWAY__DRAIN_TIMEOUT_S"])
    pre_stop = int(gateway["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert gateway["terminationGracePeriodSeconds"] > pre_stop + drain
    assert drain == Settings().gateway.drain_timeout_s
    hpa = by_kind[("HorizontalPodAutoscaler", "realchat-gateway")]["spec"]
    metrics = [m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"]
    assert metrics == ["realchat_gateway_active_connections"]
    for name in ("realchat-gateway", "realchat-chat", "realchat-auth"):
        assert ("PodDisruptionBudget", name) in by_kind
        assert ("Service", name) in by_kind


def test_the_examples_are_valid_yaml_naming_the_base() -> None:
    [overlay] = documents(KUBERNETES / "examples" / "overlay" / "kustomization.yaml")
    assert "../../base" in overlay["resources"]
    for path in (KUBERNETES / "examples").glob("*.yaml"):
        for document in documents(path):
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(document), path.name

"""The Kubernetes manifests: the Helm chart (deployments/helm/realchat) rendered offline by the
pinned Helm (`make deps-test` builds it) with its default values and with the external-endpoints
example, every document valid against the Kubernetes API schemas (kubernetes-validate, strict: an
unknown field is an error), wired like the compose file (real settings, real subcommands, probes
on the ops ports, secrets where they are needed); the kustomize base is the chart's rendering; a
broken template or a misspelt value is caught."""

from __future__ import annotations

import copy
import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from realchat.cli import build_parser
from realchat.config import Settings
from realchat.stack import helmchart
from tests.support.deployment import settings_field_exists

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / helmchart.CHART
HELM_CACHE = REPO / helmchart.DEFAULT_CACHE_DIR
KUBERNETES = REPO / "deployments" / "kubernetes"
BASE = KUBERNETES / "base"
EXAMPLE_VALUES = KUBERNETES / "examples" / "values-strimzi-cloudnativepg.yaml"
#: The values files users start from: the defaults, and endpoints of Strimzi and CloudNativePG.
VALUE_SETS = {"defaults": (), "strimzi-cloudnativepg": (EXAMPLE_VALUES,)}
SERVICES = {"gateway", "chat-service", "auth-service", "outbox-publisher", "presence"}
#: (Secret, key) every container reads, per values file: nothing else, and no credential inline.
SECRET_REFS = {
    "defaults": {
        ("realchat-secrets", "database-url"),
        ("realchat-secrets", "redis-url"),
        ("realchat-secrets", "chat-internal-token"),
    },
    "strimzi-cloudnativepg": {
        ("realchat-db-app", "uri"),
        ("realchat-redis", "url"),
        ("realchat-secrets", "chat-internal-token"),
    },
}
#: What every rendering holds, by kind: an empty or partial rendering fails.
EXPECTED = {
    "ServiceAccount": {"realchat"},
    "ConfigMap": {"realchat-config"},
    "Deployment": {
        f"realchat-{c}" for c in ("gateway", "chat", "auth", "outbox-publisher", "presence")
    },
    "Service": {"realchat-gateway", "realchat-chat", "realchat-auth"},
    "PodDisruptionBudget": {
        f"realchat-{c}" for c in ("gateway", "chat", "auth", "outbox-publisher", "presence")
    },
    "HorizontalPodAutoscaler": {"realchat-gateway"},
}

Manifest = dict[str, Any]


def render(*values_files: Path, chart: Path = CHART, set_values: tuple[str, ...] = ()) -> str:
    return helmchart.template(chart, values_files, set_values, cache_dir=HELM_CACHE)


def documents(text: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(text) if d]


@functools.cache
def _rendered(value_set: str) -> tuple[Manifest, ...]:
    return tuple(documents(render(*VALUE_SETS[value_set])))


def rendered(value_set: str) -> list[Manifest]:
    """The chart's manifests for one values file (rendered once; each caller gets a copy)."""
    return copy.deepcopy(list(_rendered(value_set)))


def errors(manifest: Manifest) -> str | None:
    try:
        kubernetes_validate.validate(manifest, helmchart.KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc)
    return None


def invalid(manifests: list[Manifest]) -> dict[str, str]:
    found = {f"{m['kind']}/{m['metadata']['name']}": errors(m) for m in manifests}
    return {name: error for name, error in found.items() if error}


def by_kind(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def config(manifests: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = by_kind(manifests)[("ConfigMap", "realchat-config")]["data"]
    return data


def workloads(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(name, container) of every Deployment and Job."""
    for m in manifests:
        if m["kind"] in ("Deployment", "Job"):
            for container in m["spec"]["template"]["spec"]["containers"]:
                yield m["metadata"]["name"], container


VALUE_SET_NAMES = list(VALUE_SETS)


@pytest.mark.parametrize("value_set", VALUE_SET_NAMES)
def test_the_chart_lints_clean(value_set: str) -> None:
    output = helmchart.lint(CHART, VALUE_SETS[value_set], cache_dir=HELM_CACHE)
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("value_set", VALUE_SET_NAMES)
def test_every_rendered_manifest_is_valid_against_the_api_schema(value_set: str) -> None:
    manifests = rendered(value_set)
    assert invalid(manifests) == {}
    names: dict[str, set[str]] = {}
    for m in manifests:
        names.setdefault(m["kind"], set()).add(m["metadata"]["name"])
    assert {kind: names.get(kind) for kind in EXPECTED} == EXPECTED
    jobs = sorted(names["Job"])
    assert [j.rsplit("-", 1)[0] for j in jobs] == ["realchat-create-topics", "realchat-migrate"]


def test_the_kustomize_base_is_the_charts_rendering() -> None:
    [kustomization] = documents((BASE / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [helmchart.KUBERNETES_BASE.name]
    assert {p.name for p in BASE.iterdir()} == {"kustomization.yaml", "realchat.yaml"}
    committed = (REPO / helmchart.KUBERNETES_BASE).read_text()
    # After a chart change: `make kubernetes-base`.
    assert committed == helmchart.kubernetes_base(CHART, cache_dir=HELM_CACHE)


def test_a_broken_template_is_caught(tmp_path: Path) -> None:
    """Helm renders what a template says; the schema check is what refuses a wrong field."""
    chart = tmp_path / "realchat"
    shutil.copytree(CHART, chart)
    gateway = chart / "templates" / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("rollingUpdate:", "rollingUpdates:"))
    chat = chart / "templates" / "chat.yaml"
    chat.write_text(chat.read_text().replace("containerPort: {{", "containerPort: x{{"))
    broken = invalid(documents(render(chart=chart)))
    assert set(broken) == {"Deployment/realchat-gateway", "Deployment/realchat-chat"}
    assert "rollingUpdates" in broken["Deployment/realchat-gateway"]


def test_a_broken_manifest_is_caught() -> None:
    deployment = by_kind(rendered("defaults"))[("Deployment", "realchat-gateway")]
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["replica"] = 3  # an unknown field: dropped silently by a lenient check
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["minReadySeconds"] = "three"
    nameless = copy.deepcopy(deployment)
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]  # a required field
    assert errors(deployment) is None
    assert errors(misspelt)
    assert errors(wrong_type)
    assert errors(nameless)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gateway": {"replica": 5}}, "replica"),  # misspelt: would be ignored without the schema
        ({"chat": {"replicas": "two"}}, "replicas"),
        ({"kafka": {"bootstrapServers": ""}}, "bootstrapServers"),
        ({"extraConfig": {"LOG_LEVEL": "DEBUG"}}, "LOG_LEVEL"),  # not a REALCHAT_* setting
    ],
)
def test_a_wrong_value_is_refused_by_lint_and_template(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(helmchart.HelmError, match=message):
        render(path)
    with pytest.raises(helmchart.HelmError, match=message):
        helmchart.lint(CHART, [path], cache_dir=HELM_CACHE)


def test_the_gateway_grace_must_cover_its_drain() -> None:
    with pytest.raises(helmchart.HelmError, match="terminationGracePeriodSeconds"):
        render(set_values=("gateway.drainTimeoutSeconds=40",))


@pytest.mark.parametrize("value_set", VALUE_SET_NAMES)
def test_every_variable_is_a_real_setting(value_set: str) -> None:
    manifests = rendered(value_set)
    names = set(config(manifests))
    for _, container in workloads(manifests):
        names |= {e["name"] for e in container.get("env", [])}
    assert [n for n in sorted(names) if not settings_field_exists(n)] == []


def test_values_reach_settings_the_services_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap of the external-endpoints values, read as a pod reads it (environment)."""
    for key in [k for k in os.environ if k.startswith("REALCHAT_")]:
        monkeypatch.delenv(key)
    for key, value in config(rendered("strimzi-cloudnativepg")).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "realchat-kafka-kafka-bootstrap:9092"
    assert settings.kafka.partitions == 24
    assert settings.auth.trusted_proxies == ["10.244.0.0/16"]
    assert settings.gateway.trusted_proxies == ["10.244.0.0/16"]
    assert settings.database.pool_max_size == 20  # extraConfig
    assert settings.auth.url == "http://realchat-auth:17080"
    gateway = by_kind(rendered("strimzi-cloudnativepg"))[("Deployment", "realchat-gateway")]
    [container] = gateway["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/realchat:0.1.0"
    defaults = config(rendered("defaults"))
    assert defaults["REALCHAT_KAFKA__BOOTSTRAP_SERVERS"] == "realchat-kafka-bootstrap:9092"


@pytest.mark.parametrize("value_set", VALUE_SET_NAMES)
def test_every_container_runs_a_realchat_subcommand(value_set: str) -> None:
    parser = build_parser()
    commands = set()
    for name, container in workloads(rendered(value_set)):
        try:
            commands.add(parser.parse_args(container["args"]).command)
        except SystemExit:
            pytest.fail(f"{name}: `realchat {' '.join(container['args'])}` is not a command")
    assert commands == SERVICES | {"migrate", "topics"}


def test_probes_hit_the_ops_port_of_each_service() -> None:
    manifests = rendered("defaults")
    data = config(manifests)
    ops_ports = {
        "gateway": data["REALCHAT_GATEWAY__OPS_PORT"],
        "chat-service": data["REALCHAT_CHAT__OPS_PORT"],
        "auth-service": data["REALCHAT_AUTH__OPS_PORT"],
        "outbox-publisher": data["REALCHAT_OUTBOX__OPS_PORT"],
        "presence": data["REALCHAT_PRESENCE__OPS_PORT"],
    }
    checked = set()
    for name, container in workloads(manifests):
        command = container["args"][0]
        if command not in SERVICES:
            continue
        ports = {p["name"]: str(p["containerPort"]) for p in container["ports"]}
        assert ports["ops"] == ops_ports[command], name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        checked.add(command)
    assert checked == SERVICES


@pytest.mark.parametrize("value_set", VALUE_SET_NAMES)
def test_secrets_come_from_secrets_and_only_auth_reads_the_private_key(value_set: str) -> None:
    manifests = rendered(value_set)
    refs = set()
    for name, container in workloads(manifests):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                refs.add((ref["name"], ref["key"]))
            else:
                value = str(env.get("value", ""))
                assert "://" not in value or "@" not in value, f"{name}: a credential in a URL"
        private = any(
            e["name"] == "REALCHAT_AUTH__PRIVATE_KEY_FILE" for e in container.get("env", [])
        )
        assert private == (container["args"] == ["auth-service"]), name
    assert refs == SECRET_REFS[value_set]
    for m in manifests:
        if m["kind"] == "Deployment":
            for volume in m["spec"]["template"]["spec"].get("volumes", []):
                secret = volume.get("secret")
                if secret and m["metadata"]["name"] != "realchat-auth":
                    assert [i["key"] for i in secret["items"]] == ["auth-signing-key.pub.pem"]
    assert not [m for m in manifests if m["kind"] == "Secret"]  # created by the operator


def test_secrets_rendered_by_the_chart_only_when_asked_and_given(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump(
            {
                "secrets": {
                    "create": True,
                    "databaseUrl": "postgresql://realchat:pw@db:5432/realchat",
                    "redisUrl": "redis://:pw@redis:6379/0",
                    "chatInternalToken": "t" * 64,
                    "signingKeyPem": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
                    "signingKeyPubPem": "-----BEGIN PUBLIC KEY-----\ny\n-----END PUBLIC KEY-----\n",
                }
            }
        )
    )
    manifests = documents(render(keys))
    assert invalid(manifests) == {}
    secrets = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Secret"}
    assert set(secrets) == {"realchat-secrets", "realchat-signing-key"}
    assert set(secrets["realchat-secrets"]["stringData"]) == {
        "database-url",
        "redis-url",
        "chat-internal-token",
    }
    with pytest.raises(helmchart.HelmError, match=r"secrets\.redisUrl"):
        render(keys, set_values=("secrets.redisUrl=",))


def test_gateways_drain_within_their_grace_and_scale_on_connections() -> None:
    manifests = rendered("defaults")
    objects = by_kind(manifests)
    gateway = objects[("Deployment", "realchat-gateway")]["spec"]["template"]["spec"]
    drain = float(config(manifests)["REALCHAT_GATEWAY__DRAIN_TIMEOUT_S"])
    pre_stop = int(gateway["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert gateway["terminationGracePeriodSeconds"] > pre_stop + drain
    assert drain == Settings().gateway.drain_timeout_s
    hpa = objects[("HorizontalPodAutoscaler", "realchat-gateway")]["spec"]
    metrics = [m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"]
    assert metrics == ["realchat_gateway_active_connections"]
    # The HPA owns the replica count: an upgrade must not reset it.
    assert "replicas" not in objects[("Deployment", "realchat-gateway")]["spec"]
    fixed = by_kind(documents(render(set_values=("gateway.autoscaling.enabled=false",))))
    assert ("HorizontalPodAutoscaler", "realchat-gateway") not in fixed
    assert fixed[("Deployment", "realchat-gateway")]["spec"]["replicas"] == 3


def test_a_new_image_makes_new_jobs() -> None:
    """A Job cannot be changed in place: an upgrade to another image must run new ones."""

    def jobs(*set_values: str) -> set[str]:
        return {m["metadata"]["name"] for m in documents(render(set_values=set_values))
                if m["kind"] == "Job"}  # fmt: skip

    assert jobs() == jobs("image.tag=0.1.0")
    assert jobs().isdisjoint(jobs("image.tag=0.2.0"))


def test_the_examples_are_valid_yaml_naming_the_base() -> None:
    [overlay] = documents((KUBERNETES / "examples" / "overlay" / "kustomization.yaml").read_text())
    assert "../../base" in overlay["resources"]
    for path in (KUBERNETES / "examples").glob("*.yaml"):
        if path == EXAMPLE_VALUES:
            continue
        for document in documents(path.read_text()):
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(document), path.name

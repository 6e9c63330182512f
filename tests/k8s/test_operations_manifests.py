"""The Kubernetes review points, each checked so it cannot come back.

Reads the committed manifests and the `kubectl kustomize` render (kubectl from Debian).
"""

from __future__ import annotations

import re
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml

from fte import observability
from schema.events import Alert
from test_manifests import (  # the same folder (pytest's rootdir-relative import)
    K8S,
    REPO,
    _by_name,
    _containers,
    _documents,
    _env,
    _of_kind,
    _pod_specs,
    _pod_template,
    kustomize,
)

LONG_RUNNING = {"Deployment", "StatefulSet"}
HEARTBEAT_SERVICES = {"support-flow", "metrics-flow", "dispatcher", "notify"}


def _workloads() -> list[dict]:
    return [d for _, d in _documents() if d["kind"] in LONG_RUNNING]


def _component(doc: dict) -> str:
    return _pod_template(doc)["metadata"]["labels"]["app.kubernetes.io/component"]


# --- Pod Security `restricted` and Strimzi ---------------------------------------------

RESTRICTED_CONTAINER = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def test_namespace_is_restricted_and_strimzi_pods_meet_it():
    [namespace] = _of_kind("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    [pool] = _of_kind("KafkaNodePool")
    template = pool["spec"]["template"]
    assert template["pod"]["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    for container in ("kafkaContainer", "initContainer"):
        assert template[container]["securityContext"] == RESTRICTED_CONTAINER, container
    entity = _by_name("Kafka", "fte-kafka")["spec"]["entityOperator"]["template"]
    assert entity["pod"]["securityContext"]["runAsNonRoot"] is True
    for container in ("topicOperatorContainer", "userOperatorContainer"):
        assert entity[container]["securityContext"] == RESTRICTED_CONTAINER, container
    # ...and the operator setting that makes Strimzi generate restricted pods is documented.
    readme = (K8S / "README.md").read_text()
    assert "STRIMZI_POD_SECURITY_PROVIDER_CLASS=restricted" in readme


def test_brokers_spread_over_nodes():
    [pool] = _of_kind("KafkaNodePool")
    constraints = pool["spec"]["template"]["pod"]["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c for c in constraints}
    hostname = by_key["kubernetes.io/hostname"]
    assert hostname["whenUnsatisfiable"] == "DoNotSchedule" and hostname["maxSkew"] == 1
    assert hostname["labelSelector"]["matchLabels"] == {
        "strimzi.io/cluster": "fte-kafka", "strimzi.io/pool-name": pool["metadata"]["name"]}
    assert "topology.kubernetes.io/zone" in by_key


# --- Secrets readable by the pod's user --------------------------------------------------

def test_secret_volumes_are_readable_by_the_pod_user():
    """A Secret file is readable by uid 10001 only through its group (fsGroup) or others bit."""
    for where, pod in _pod_specs():
        for volume in pod.get("volumes", []):
            if "secret" not in volume:
                continue
            mode = volume["secret"].get("defaultMode", 0o644)
            group_read = bool(mode & 0o040) and pod["securityContext"].get("fsGroup") == \
                pod["securityContext"]["runAsUser"]
            assert group_read or mode & 0o004, (where, volume["name"], oct(mode))


# --- autoscaled workloads ------------------------------------------------------------------

def test_autoscaled_workloads_leave_replicas_to_the_autoscaler():
    targets = [h["spec"]["scaleTargetRef"] for h in _of_kind("HorizontalPodAutoscaler")]
    targets += [s["spec"]["scaleTargetRef"] for s in _of_kind("ScaledObject")]
    assert targets
    for target in targets:
        workload = _by_name(target.get("kind", "Deployment"), target["name"])
        assert "replicas" not in workload["spec"], f"{target['name']}: replicas fights the autoscaler"


def test_bytewax_statefulsets_are_not_autoscaled_and_resizing_is_documented():
    """A Bytewax cluster restarts as a whole with a new peer list: it is resized by hand."""
    flows = {d["metadata"]["name"] for d in _of_kind("StatefulSet")}
    for scaled in _of_kind("ScaledObject") + _of_kind("HorizontalPodAutoscaler"):
        assert scaled["spec"]["scaleTargetRef"]["name"] not in flows
    runbook = (REPO / "docs" / "runbook.md").read_text()
    section = runbook.split("## Resize a flow", 1)[1].split("\n## ", 1)[0]
    assert "--rebalance" in section and "--processes" in section and "--replicas" in section


# --- the image -------------------------------------------------------------------------

def _lock() -> dict[str, str]:
    text = (K8S / "requirements.lock").read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.MULTILINE)}


def test_the_image_lock_is_what_the_tests_run_with():
    lock = _lock()
    assert "bytewax" in lock and lock["bytewax"] == "0.21.1"
    mismatched = {}
    for name, pinned in lock.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            mismatched[name] = (pinned, None)
            continue
        if installed != pinned:
            mismatched[name] = (pinned, installed)
    assert not mismatched, f"k8s/requirements.lock differs from the test environment: {mismatched}"
    # Every pin carries hashes: pip --require-hashes refuses anything else.
    text = (K8S / "requirements.lock").read_text()
    pins = re.findall(r"^[A-Za-z0-9_.\-]+==\S+ \\\n    --hash=sha256:[0-9a-f]{64}", text, re.MULTILINE)
    assert len(pins) == len(lock)


def test_every_runtime_dependency_is_in_the_lock():
    import tomllib

    lock = _lock()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.\-]+", dep).group(0).lower()
        assert name in lock or name.replace("_", "-") in lock, name


# --- probes ----------------------------------------------------------------------------

def test_long_running_workloads_have_liveness_and_readiness():
    for doc in _workloads():
        for container in _pod_template(doc)["spec"]["containers"]:
            where = (doc["metadata"]["name"], container["name"])
            assert "livenessProbe" in container and "readinessProbe" in container, where


def test_heartbeat_services_probe_their_exporter():
    """Flows, dispatcher and notify: /livez (heartbeat) and /readyz on the `metrics` port."""
    seen = set()
    for doc in _workloads():
        component = _component(doc)
        if component not in HEARTBEAT_SERVICES:
            continue
        seen.add(component)
        [container] = _pod_template(doc)["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == observability.DEFAULT_PORTS[component]
        assert _env(container)["METRICS_PORT"]["value"] == str(ports["metrics"])
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert seen == HEARTBEAT_SERVICES


# --- addresses, config, rolling ---------------------------------------------------------

def test_no_hard_coded_cluster_domain():
    for path in K8S.iterdir():
        if path.suffix in {".yaml", ".py", ".json"}:
            assert "cluster.local" not in path.read_text(), path.name


def test_flow_script_edits_roll_the_pods(tmp_path):
    """The scripts ConfigMap is named by a hash of its content, and the pods mount that name."""
    def mounted(docs):
        [scripts] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fte-flow-scripts")]
        for sts in (d for d in docs if d["kind"] == "StatefulSet"):
            names = {v["configMap"]["name"] for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
            assert names == {scripts["metadata"]["name"]}, sts["metadata"]["name"]
        return scripts["metadata"]["name"]

    before = mounted(kustomize())
    assert before != "fte-flow-scripts", "the name must carry a content hash"
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    (copy / "flow_entry.py").write_text((copy / "flow_entry.py").read_text() + "\n# edited\n")
    assert mounted(kustomize(copy)) != before


# --- backups ---------------------------------------------------------------------------

def test_postgres_is_backed_up_on_a_schedule():
    [cluster] = _of_kind("Cluster")
    backup = cluster["spec"]["backup"]
    store = backup.get("barmanObjectStore")
    assert store or backup.get("volumeSnapshot")
    if store:
        assert store["destinationPath"].startswith(("s3://", "gs://", "https://"))
        assert store["wal"]["compression"]  # WAL archived continuously
    assert re.fullmatch(r"\d+[dwm]", backup["retentionPolicy"])
    [scheduled] = _of_kind("ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert scheduled["spec"]["method"] == ("barmanObjectStore" if store else "volumeSnapshot")
    assert len(scheduled["spec"]["schedule"].split()) == 6  # CloudNativePG's cron has seconds
    assert "## Restore Postgres" in (REPO / "docs" / "runbook.md").read_text()


# --- monitoring ------------------------------------------------------------------------

def _exported_names() -> set[str]:
    from prometheus_client import REGISTRY

    names = set()
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 -- the registry's own index
        names |= set(REGISTRY._collector_to_names[collector])
    names |= {"fte_outbox_depth", "fte_outbox_oldest_age_seconds", "fte_recovery_partitions_held",
              "fte_recovery_last_snapshot_age_seconds"}  # collectors registered by their services
    names |= {"bytewax_kafka_consumer_lag", "up"}  # Bytewax's Kafka source; Prometheus itself
    return names


def _metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[|\)|$|\s*[<>=])", expr)
            if m.startswith(("fte_", "bytewax_")) or m == "up"}


def test_every_long_running_service_is_scraped():
    monitors = _of_kind("PodMonitor")
    for doc in _workloads():
        labels = _pod_template(doc)["metadata"]["labels"]
        ports = {p["name"] for c in _pod_template(doc)["spec"]["containers"] for p in c.get("ports", [])}
        scraped = [m for m in monitors
                   if m["spec"]["selector"]["matchLabels"].items() <= labels.items()
                   and {e["port"] for e in m["spec"]["podMetricsEndpoints"]} & ports
                   and any(e["port"] in ports and (e["port"] == "metrics" or _component(doc) == "ingress")
                           for e in m["spec"]["podMetricsEndpoints"])]
        assert scraped, f"{doc['metadata']['name']} has no scraped metrics port"


def test_alerts_mirror_the_console_and_use_exported_metrics():
    [rule] = _of_kind("PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    exprs = " ".join(r["expr"] for r in rules)
    for kind in Alert.model_fields["kind"].annotation.__args__:
        assert f'kind="{kind}"' in exprs or (kind == "consumer_lag" and "consumer_lag" in exprs), kind
    exported = _exported_names()
    runbook = (REPO / "docs" / "runbook.md").read_text()
    for r in rules:
        unknown = _metric_names(r["expr"]) - exported
        assert not unknown, (r["alert"], unknown)
        anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == r["alert"].lower() and f"### {r['alert']}" in runbook, r["alert"]


def test_grafana_dashboard_shows_exported_metrics():
    import json

    dashboard = json.loads((K8S / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    exported = _exported_names()
    for expr in exprs:
        base = {n.removesuffix("_bucket") for n in _metric_names(expr)}
        assert base <= exported, (expr, base - exported)
    generator = yaml.safe_load((K8S / "kustomization.yaml").read_text())["configMapGenerator"]
    assert any("grafana-dashboard.json" in g["files"] for g in generator)


def test_prometheus_may_reach_every_exporter_port():
    [policy] = [p for p in _of_kind("NetworkPolicy") if p["metadata"]["name"] == "prometheus-scrape"]
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    for doc in _workloads():
        for container in _pod_template(doc)["spec"]["containers"]:
            for port in container.get("ports", []):
                if port["name"] == "metrics" or _component(doc) == "ingress":
                    assert port["containerPort"] in allowed, (doc["metadata"]["name"], port)


def test_notify_and_report_run_in_the_cluster():
    notify = _by_name("Deployment", "notify")["spec"]["template"]["spec"]["containers"][0]
    assert notify["command"] == ["fte", "notify"]
    assert _env(notify)["NOTIFY_SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"] == "fte-secrets"
    report = _by_name("CronJob", "daily-report")
    assert report["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][:3] == \
        ["fte", "report", "daily"]
    close = _by_name("CronJob", "close-quiet-tickets")
    assert close["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"] == \
        ["fte", "tickets", "close-quiet"]

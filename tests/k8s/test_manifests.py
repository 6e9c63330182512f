"""The production manifests in k8s/: structure, settings, commands, topics and security.

Nothing here talks to a cluster (none is available to the suite); the checks read the YAML
and compare it with the code it deploys: fte/settings.py, the `fte` parser, schema/topics.py
and bytewax.run's own argument parsing.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import bytewax.run
import pytest
import yaml

from fte.cli import build_parser
from fte.settings import Settings
from schema.topics import ALL_TOPICS, INBOUND_BY_CHANNEL, SUPPORT_EVENTS

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SECRET_SETTINGS = {"TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "CONSOLE_USERS", "DATABASE_URL"}
CLUSTER_SCOPED = {"Namespace"}
CUSTOM_GROUPS = {"kafka.strimzi.io", "postgresql.cnpg.io", "keda.sh", "monitoring.coreos.com"}
CRD_DIR = Path(__file__).with_name("crds")  # vendored from the operators' repositories (crds/README.md)
KUBERNETES_VERSION = "1.33.0"


def _load_render_topics():
    spec = importlib.util.spec_from_file_location("render_topics", K8S / "render_topics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _documents() -> list[tuple[str, dict]]:
    docs = []
    for name in _kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc is not None:
                docs.append((name, doc))
    return docs


def _of_kind(kind: str) -> list[dict]:
    return [d for _, d in _documents() if d["kind"] == kind]


def _by_name(kind: str, name: str) -> dict:
    [doc] = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def _pod_template(doc: dict) -> dict | None:
    if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
        return doc["spec"]["template"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return None


def _pod_specs() -> list[tuple[str, dict]]:
    specs = []
    for _, doc in _documents():
        template = _pod_template(doc)
        if template is not None:
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", template["spec"]))
    return specs


def _containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def _config() -> dict[str, str]:
    return _by_name("ConfigMap", "fte-config")["data"]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _uvicorn_env_names() -> set[str]:
    """Variables uvicorn's Config reads itself (`fte ingress` runs uvicorn)."""
    import uvicorn.config

    return set(re.findall(r"environ(?:\.get\(|\[)\"([A-Z_]+)\"", Path(uvicorn.config.__file__).read_text()))


def _bytewax_run_env_names() -> set[str]:
    """The BYTEWAX_* variables `python -m bytewax.run` itself reads, from its source."""
    return set(re.findall(r"\"(BYTEWAX_[A-Z_]+)\"", Path(bytewax.run.__file__).read_text()))


# --- topics --------------------------------------------------------------------------


def test_topic_yaml_is_the_render_of_schema_topics():
    committed = (K8S / "kafka-topics.yaml").read_text()
    assert committed == _load_render_topics().render(""), (
        "k8s/kafka-topics.yaml is stale: .venv/bin/python k8s/render_topics.py > k8s/kafka-topics.yaml"
    )


def test_topic_resources_match_the_topic_table():
    topics = {t["spec"]["topicName"]: t for t in _of_kind("KafkaTopic")}
    assert set(topics) == {t.name for t in ALL_TOPICS}
    kafka = _by_name("Kafka", "fte-kafka")
    brokers = sum(p["spec"]["replicas"] for p in _of_kind("KafkaNodePool")
                  if "broker" in p["spec"]["roles"])
    for topic in ALL_TOPICS:
        spec = topics[topic.name]["spec"]
        assert spec["partitions"] == topic.partitions
        assert spec["config"]["retention.ms"] == topic.retention_ms
        assert spec["replicas"] <= brokers
        assert spec["config"]["min.insync.replicas"] < spec["replicas"]
        assert topics[topic.name]["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]


def test_kafka_is_kraft_with_a_node_pool_and_no_auto_created_topics():
    kafka = _by_name("Kafka", "fte-kafka")
    # The v1 API is KRaft-only; nodes, roles and storage come from the node pool.
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert "zookeeper" not in kafka["spec"] and "replicas" not in kafka["spec"]["kafka"]
    [pool] = _of_kind("KafkaNodePool")
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "fte-kafka"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    bootstrap = _config()["KAFKA_BOOTSTRAP_SERVERS"]
    port = next(l["port"] for l in kafka["spec"]["kafka"]["listeners"] if not l["tls"])
    assert bootstrap == f"fte-kafka-kafka-bootstrap.fte.svc:{port}"


def test_postgres_cluster_has_pgvector():
    [cluster] = _of_kind("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert "standard" in cluster["spec"]["imageName"]  # the CNPG variant that ships pgvector
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    assert "CREATE EXTENSION IF NOT EXISTS vector" in initdb["postInitApplicationSQL"]
    # DATABASE_URL points at the Secret CloudNativePG writes for the application owner.
    assert f"{cluster['metadata']['name']}-app" == "fte-pg-app"


def test_every_extension_the_migrations_need_exists_before_they_run():
    """`fte migrate` runs as the database owner, not a superuser: extensions come from bootstrap."""
    [cluster] = _of_kind("Cluster")
    bootstrap_sql = " ".join(cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"])
    created = set(re.findall(r"CREATE EXTENSION IF NOT EXISTS (\w+)", bootstrap_sql, re.IGNORECASE))
    needed = set()
    for migration in sorted((REPO / "schema" / "migrations").glob("*.sql")):
        needed |= set(re.findall(r"CREATE EXTENSION(?: IF NOT EXISTS)? \"?(\w+)", migration.read_text(), re.IGNORECASE))
    assert needed and needed <= created, needed - created


# --- structure -----------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_they_parse():
    listed = set(_kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for name, doc in _documents():
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert doc["metadata"].get("name"), name
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == "fte", (name, doc["metadata"]["name"])
    for generator in _kustomization()["configMapGenerator"]:
        for file in generator["files"]:
            assert (K8S / file).is_file()


def test_no_secret_values_in_the_manifests():
    assert not _of_kind("Secret"), "Secrets are created out of band, never committed"
    config = _config()
    assert not SECRET_SETTINGS & set(config)
    for where, pod in _pod_specs():
        for container in _containers(pod):
            for name, entry in _env(container).items():
                if name in SECRET_SETTINGS:
                    assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], (where, name)


def test_every_variable_is_a_setting_or_read_by_bytewax_run_or_uvicorn():
    assert "FORWARDED_ALLOW_IPS" in _uvicorn_env_names()
    # POD_NAME: k8s/flow_entry.py's --pod-name default.
    assert 'os.environ.get("POD_NAME")' in (K8S / "flow_entry.py").read_text()
    known = set(Settings.model_fields) | _bytewax_run_env_names() | _uvicorn_env_names() | {"POD_NAME"}
    assert set(_config()) <= set(Settings.model_fields), set(_config()) - set(Settings.model_fields)
    for where, pod in _pod_specs():
        for container in _containers(pod):
            unknown = set(_env(container)) - known
            assert not unknown, (where, container["name"], unknown)
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == "fte-config"


def test_production_settings_load_from_the_config_and_secret_references(monkeypatch):
    """What a pod sees (ConfigMap + its secret env) is accepted by Settings in production."""
    for key in list(Settings.model_fields):
        monkeypatch.delenv(key, raising=False)
    for key, value in _config().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://fte:x@fte-pg-rw.fte.svc:5432/fte")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "a-real-token-from-the-secret")
    settings = Settings(_env_file=None)
    assert settings.ENVIRONMENT == "production"
    assert not settings.embedded_kafka and not settings.embedded_postgres
    assert int(settings.RECOVERY_SNAPSHOT_S) == settings.RECOVERY_SNAPSHOT_S


def test_containers_run_fte_subcommands_or_a_bytewax_flow():
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)
    for where, pod in _pod_specs():
        for container in pod["containers"]:
            assert container["image"].split(":")[0] == "fte", where
            command = container["command"]
            if command[0] == "fte":
                assert command[1] in subcommands, f"{where}: `fte {command[1]}` is not a subcommand"
                _assert_parses(command[1:], where)
            else:
                assert command[0] == "python" and command[1].endswith("/flow_entry.py"), where
                _assert_flow_builds(pod, container, command[1], command[2])


def _assert_parses(argv: list[str], where: str) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `fte {' '.join(argv)}` does not parse")


def _assert_flow_builds(pod: dict, container: dict, path: str, flow_name: str) -> None:
    """The entry file is shipped in the scripts ConfigMap, mounted, and builds a Dataflow."""
    from bytewax.dataflow import Dataflow

    call = f"{flow_name}()"
    mount_dir, file = path.rsplit("/", 1)
    [generator] = [g for g in _kustomization()["configMapGenerator"] if g["name"] == "fte-flow-scripts"]
    assert file in generator["files"], f"{file} is not in the fte-flow-scripts ConfigMap"
    volumes = {v["name"]: v for v in pod["volumes"]}
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == mount_dir]
    assert volumes[mount["name"]]["configMap"]["name"] == "fte-flow-scripts"
    assert re.fullmatch(r"[a-z_]+\(\)", call), f"{path} {flow_name}: expected a no-argument factory"
    spec = importlib.util.spec_from_file_location("flow_entry", K8S / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["flow_entry"] = module
    spec.loader.exec_module(module)
    flow = getattr(module, call[:-2])()
    assert isinstance(flow, Dataflow), (path, flow_name)


def test_workloads_are_locked_down_and_sized():
    for where, pod in _pod_specs():
        assert pod["automountServiceAccountToken"] is False, where
        sec = pod["securityContext"]
        assert sec["runAsNonRoot"] is True and sec["runAsUser"] == 10001, where
        assert sec["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in _containers(pod):
            csec = container["securityContext"]
            assert csec["readOnlyRootFilesystem"] is True, (where, container["name"])
            assert csec["allowPrivilegeEscalation"] is False, (where, container["name"])
            assert csec["capabilities"]["drop"] == ["ALL"], (where, container["name"])
            res = container["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), (where, container["name"])
            assert "memory" in res["limits"], (where, container["name"])
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert mounts, f"{where}: a read-only root needs a writable mount"


def test_dockerfile_builds_the_image_the_manifests_run():
    text = (K8S / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.11-slim", "python:3.11-slim"]
    assert "pip install --no-deps /wheels/*.whl" in text and "pip wheel" in text
    # Dependencies only from the lock (hash-checked), never resolved at build time.
    assert "--require-hashes --no-deps -r /tmp/requirements.lock" in text
    user = re.search(r"^USER (\d+)", text, re.MULTILINE).group(1)
    assert int(user) == 10001
    assert "ENV" in text and "HOME=/tmp" in text  # readOnlyRootFilesystem, /tmp is an emptyDir


def test_core_resources_match_the_kubernetes_api_schema():
    """Strict: an unknown or misspelt field fails, as `kubectl apply --validate=strict` would."""
    import kubernetes_validate

    checked = 0
    for name, doc in _documents():
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS, (name, doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert checked >= 20


def _crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                for version in crd["spec"]["versions"]:
                    key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                    schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                    schema["properties"]["metadata"] = {"type": "object"}
                    schemas[key] = schema
    return schemas


def custom_resource_errors(doc: dict, schemas: dict) -> list[str]:
    import jsonschema

    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"no vendored CRD for {key}: add it to tests/k8s/crds"
    return [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schemas[key]).iter_errors(doc)]


def test_custom_resources_match_the_vendored_operator_crds():
    """Strimzi, CloudNativePG, KEDA and Prometheus-operator resources against their CRDs."""
    schemas = _crd_schemas()
    checked = set()
    for name, doc in _documents():
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            errors = custom_resource_errors(doc, schemas)
            assert not errors, (name, doc["metadata"]["name"], errors)
            checked.add(doc["kind"])
    assert checked >= {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ScheduledBackup",
                       "ScaledObject", "PodMonitor", "PrometheusRule"}


def test_the_crd_check_rejects_a_misspelt_field():
    """The closed schemas catch what the API server would prune or refuse."""
    schemas = _crd_schemas()
    pool = copy.deepcopy(_of_kind("KafkaNodePool")[0])
    pool["spec"]["template"]["pod"]["topologySpreadConstrains"] = []
    assert custom_resource_errors(pool, schemas)
    backup = copy.deepcopy(_of_kind("ScheduledBackup")[0])
    backup["spec"]["method"] = "tape"
    assert custom_resource_errors(backup, schemas)


def _closed(schema):
    """Reject unknown fields, as the API server prunes or refuses them."""
    if isinstance(schema, dict):
        if (schema.get("type") == "object" and "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            _closed(value)
    elif isinstance(schema, list):
        for value in schema:
            _closed(value)
    return schema


# --- ingress, console, dispatcher ------------------------------------------------------


def test_ingress_scales_and_probes_health():
    deployment = _by_name("Deployment", "ingress")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert "livenessProbe" in container
    port = container["ports"][0]["containerPort"]
    assert str(port) == _config()["INGRESS_PORT"] and _config()["INGRESS_HOST"] == "0.0.0.0"
    hpa = _by_name("HorizontalPodAutoscaler", "ingress")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ingress"
    assert "replicas" not in deployment["spec"], "the HPA owns replicas"
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = _by_name("PodDisruptionBudget", "ingress")
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _by_name("Service", "ingress")
    assert service["spec"]["selector"].items() <= labels.items()


def test_services_and_edge_route_to_real_ports():
    edge = _by_name("Ingress", "fte")
    for rule in edge["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = _by_name("Service", backend["name"])
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
            workload = _by_name("Deployment", backend["name"])
            assert service["spec"]["selector"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    console = _by_name("Deployment", "console")["spec"]["template"]["spec"]["containers"][0]
    assert str(console["ports"][0]["containerPort"]) == _config()["CONSOLE_PORT"]
    assert "CONSOLE_USERS" in _env(console)


def test_edge_routes_only_the_public_surface():
    import re

    edge = _by_name("Ingress", "fte")
    support = next(r for r in edge["spec"]["rules"] if r["host"].startswith("support."))
    routed = [(p["path"], p["pathType"]) for p in support["http"]["paths"]]
    assert set(routed) == {("/", "Exact"), ("/static/", "Prefix"), ("/support/", "Prefix"),
                           ("/webhooks/", "Prefix"), ("/health", "Exact")}

    def public(path: str) -> bool:
        return any(path == p if kind == "Exact" else path.startswith(p) for p, kind in routed)

    for operator in ("/customers/lookup", "/conversations/1", "/metrics", "/metrics/channels",
                     "/docs", "/openapi.json", "/health/details"):
        assert not public(operator), operator
    assert all(re.match(r"^/(support|webhooks|static)/|^/(health)?$", p) for p, _ in routed)


def test_channel_secrets_only_in_the_pods_that_use_them():
    for where, pod in _pod_specs():
        for container in pod["containers"]:
            command = " ".join(container.get("command", []))
            uses_channels = command in ("fte ingress", "fte dispatch")
            assert ("TWILIO_AUTH_TOKEN" in _env(container)) == uses_channels, (where, command)
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert ("gmail" in mounts) == uses_channels, (where, command)


def test_dispatcher_replicas_only_when_claims_are_exclusive():
    scaled = _by_name("ScaledObject", "dispatcher")["spec"]
    source = (REPO / "sinks" / "dispatcher.py").read_text()
    # More than one dispatcher is safe only while rows are claimed exclusively, with a lease.
    assert scaled["maxReplicaCount"] == 1 or ("FOR UPDATE SKIP LOCKED" in source and "lease" in source)


def test_network_policies_default_deny_every_fte_pod():
    policies = {p["metadata"]["name"]: p for p in _of_kind("NetworkPolicy")}
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "fte"}}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny
    for _, doc in _documents():
        if _pod_template(doc) is not None:
            labels = _pod_template(doc)["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "fte", doc["metadata"]["name"]


# --- flows: a Bytewax cluster per StatefulSet -----------------------------------------


FLOWS = {"support-flow": list(INBOUND_BY_CHANNEL.values()), "metrics-flow": [SUPPORT_EVENTS]}


def _flow_entry():
    spec = importlib.util.spec_from_file_location("flow_entry", K8S / "flow_entry.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["flow_entry"] = module  # its dataclass resolves annotations through it
    spec.loader.exec_module(module)
    return module


def _config_settings(**overrides) -> Settings:
    values = {**_config(), **overrides}
    return Settings(_env_file=None, **{k: v for k, v in values.items() if k in Settings.model_fields
                                       and k != "ENVIRONMENT"})


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_flow_statefulset_is_a_consistent_bytewax_cluster(name):
    sts = _by_name("StatefulSet", name)
    replicas = sts["spec"]["replicas"]
    pod = sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    headless = _by_name("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    port = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "bytewax")
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    # No copies of the settings in BYTEWAX_* variables: the launcher derives everything.
    assert not [k for k in _env(container) if k.startswith("BYTEWAX_")]
    assert _env(container)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    argv = container["command"]
    processes = int(argv[argv.index("--processes") + 1])
    assert processes == replicas, "--processes must equal the StatefulSet's replicas"
    entry = _flow_entry()
    settings = _config_settings()
    for ordinal in range(replicas):
        place = entry.cluster_place(f"{name}-{ordinal}", processes, settings, statefulset=name,
                                    service=headless["metadata"]["name"], port=port)
        assert place.process_id == ordinal
        # Peers in ordinal order, one per replica, through the headless Service, by short name.
        assert place.addresses == [f"{name}-{i}.{name}:{port}" for i in range(replicas)]
        assert place.workers_per_process == int(_config()["FLOW_WORKERS"])
        assert place.recovery_dir == Path(_config()["RECOVERY_DIR"])
        assert place.snapshot_interval.total_seconds() == float(_config()["RECOVERY_SNAPSHOT_S"])
        assert place.backup_interval.total_seconds() == float(_config()["RECOVERY_BACKUP_S"])
    with pytest.raises(ValueError, match="outside the cluster"):
        entry.cluster_place(f"{name}-{replicas}", processes, settings, statefulset=name)

    # Equal shares: every topic the flow reads splits evenly over all workers.
    workers = replicas * int(_config()["FLOW_WORKERS"])
    for topic in FLOWS[name]:
        assert topic.partitions % workers == 0, (topic.name, workers)

    # Recovery: one volume per pod, mounted where RECOVERY_DIR is, initialised by the init
    # container with this replica count.
    [claim] = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(_config()["RECOVERY_DIR"]).is_relative_to(mounts[claim["metadata"]["name"]])
    [init] = pod["initContainers"]
    argv = init["command"]
    assert argv[1].endswith("flow-recovery-init.py") and argv[2] == _config()["RECOVERY_DIR"]
    assert int(argv[argv.index("--replicas") + 1]) == replicas
    assert int(argv[argv.index("--partitions") + 1]) >= workers


def test_flow_workers_and_recovery_settings_reach_the_flow_processes():
    """FLOW_WORKERS / RECOVERY_* in fte-config are what the launcher uses (not ignored)."""
    entry = _flow_entry()
    changed = _config_settings(FLOW_WORKERS="2", RECOVERY_SNAPSHOT_S="7", RECOVERY_BACKUP_S="30",
                               RECOVERY_DIR="/var/lib/fte/elsewhere")
    place = entry.cluster_place("support-flow-1", 2, changed, statefulset="support-flow")
    assert place.workers_per_process == 2
    assert place.snapshot_interval.total_seconds() == 7 and place.backup_interval.total_seconds() == 30
    assert place.recovery_dir == Path("/var/lib/fte/elsewhere")


def test_recovery_init_spreads_partitions_over_the_pods(tmp_path):
    script = K8S / "flow-recovery-init.py"
    seen = []
    for ordinal in range(3):
        pod_dir = tmp_path / f"pod{ordinal}"
        subprocess.run([sys.executable, str(script), str(pod_dir), "--partitions", "4",
                        "--replicas", "3", "--pod-name", f"support-flow-{ordinal}"], check=True)
        seen += sorted(p.name for p in pod_dir.glob("part-*.sqlite3"))
        assert not list(pod_dir.glob(".init-*")), "temporary directory left behind"
    assert sorted(seen) == [f"part-{i}.sqlite3" for i in range(4)]
    # A second start keeps what is there (that is the state to resume from).
    before = (tmp_path / "pod0" / "part-0.sqlite3").stat().st_mtime_ns
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "pod0"), "--partitions", "4",
                          "--replicas", "3", "--pod-name", "support-flow-0"],
                         check=True, capture_output=True, text=True).stdout
    assert "keeping" in out
    assert (tmp_path / "pod0" / "part-0.sqlite3").stat().st_mtime_ns == before


def kustomize(directory: Path = K8S) -> list[dict]:
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    rendered = subprocess.run([kubectl, "kustomize", str(directory)], check=True,
                              capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def test_kustomize_renders_the_whole_set_and_every_object_validates():
    import kubernetes_validate

    docs = kustomize()
    kinds = {d["kind"] for d in docs}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ScheduledBackup", "StatefulSet",
            "Deployment", "Job", "CronJob", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "Ingress", "NetworkPolicy", "ConfigMap", "Namespace", "ScaledObject", "PodMonitor",
            "PrometheusRule"} <= kinds
    schemas = _crd_schemas()
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            assert not custom_resource_errors(doc, schemas), where
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
    [scripts] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fte-flow-scripts")]
    assert scripts["data"]["flow-recovery-init.py"] == (K8S / "flow-recovery-init.py").read_text()
    assert scripts["data"]["flow_entry.py"] == (K8S / "flow_entry.py").read_text()

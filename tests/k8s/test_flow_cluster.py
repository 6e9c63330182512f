"""Run a real multi-process Bytewax cluster the way the flow StatefulSets do, and resize it.

Each "pod" is a `python -m bytewax.run` process placed by k8s/flow_entry.py's
`cluster_place` (process id from the pod name, peers from the process count, workers and
recovery from the settings in config.yaml), with the peers pointed at 127.0.0.1 and its
recovery volume prepared by the init container's script. Resizing uses the runbook's path:
stop, `flow-recovery-init.py --rebalance`, start with the new count.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import yaml

from fte.flow_cluster import free_ports
from fte.settings import Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
FLOW = Path(__file__).with_name("cluster_flow.py")
INIT = K8S / "flow-recovery-init.py"


def _statefulset(name: str) -> dict:
    docs = yaml.safe_load_all((K8S / f"{name}.yaml").read_text())
    return next(d for d in docs if d["kind"] == "StatefulSet")


def _flow_entry():
    spec = importlib.util.spec_from_file_location("flow_entry", K8S / "flow_entry.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["flow_entry"] = module  # its dataclass resolves annotations through it
    spec.loader.exec_module(module)
    return module


def _config_settings(recovery: Path) -> Settings:
    config = next(d for d in yaml.safe_load_all((K8S / "config.yaml").read_text()))["data"]
    values = {k: v for k, v in config.items() if k in {"FLOW_WORKERS", "RECOVERY_SNAPSHOT_S", "RECOVERY_BACKUP_S"}}
    return Settings(_env_file=None, RECOVERY_DIR=recovery, **values)


def _run_cluster(sts: dict, processes: int, root: Path, out: Path, flow_in: Path | None = None):
    name = sts["metadata"]["name"]
    init = sts["spec"]["template"]["spec"]["initContainers"][0]
    entry = _flow_entry()
    ports = free_ports(processes)
    procs = []
    for ordinal in range(processes):
        pod = f"{name}-{ordinal}"
        recovery = root / pod / "recovery"
        # The init container's command, with the pod's volume at `root/pod` and this size.
        argv = [a.replace("/var/lib/fte/recovery", str(recovery)) for a in init["command"][2:]]
        argv[argv.index("--replicas") + 1] = str(processes)
        subprocess.run([sys.executable, str(INIT), *argv, "--pod-name", pod], check=True)
        place = entry.cluster_place(pod, processes, _config_settings(recovery), statefulset=name)
        assert place.process_id == ordinal
        assert place.addresses == [f"{name}-{i}.{name}:9999" for i in range(processes)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BYTEWAX_")}
        env.update(BYTEWAX_POD_NAME=pod, FLOW_OUT=str(out))
        if flow_in is not None:
            env["FLOW_IN"] = str(flow_in)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", f"{FLOW}:flow",
             "-i", str(place.process_id), "-a", ";".join(f"127.0.0.1:{p}" for p in ports),
             "-w", str(place.workers_per_process), "-r", str(place.recovery_dir),
             "-s", str(int(place.snapshot_interval.total_seconds())),
             "-b", str(int(place.backup_interval.total_seconds()))],
            env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout))
    for result in results:
        assert result.returncode == 0, result.stdout
    return results


def _lines(out: Path) -> list[str]:
    return [line for f in sorted(out.glob("*.txt")) for line in f.read_text().splitlines()]


def test_support_flow_env_runs_a_two_process_cluster_and_resumes(tmp_path):
    sts = _statefulset("support-flow")
    assert sts["spec"]["replicas"] == 2
    out = tmp_path / "out"
    out.mkdir()
    _run_cluster(sts, 2, tmp_path, out)
    lines = _lines(out)
    numbers = sorted(int(line.split()[0]) for line in lines)
    assert numbers == list(range(240)), "every item exactly once"
    # State is per key: each of the 16 keys counted its 15 items, once each.
    counts = sorted(int(line.split()[1]) for line in lines if int(line.split()[0]) % 16 == 0)
    assert counts == list(range(1, 16))
    # Work was spread: each process owned some keys and wrote their output.
    assert {f.name.rsplit("-", 1)[0] for f in out.glob("*.txt")} == {"support-flow-0", "support-flow-1"}

    # Second execution on the same volumes: the input is exhausted in the snapshot, so the
    # cluster resumes at the end and writes nothing again.
    _run_cluster(sts, 2, tmp_path, out)
    assert len(_lines(out)) == 240


def _rebalance(root: Path, name: str, replicas: int) -> None:
    dirs = [str(root / f"{name}-{i}" / "recovery") for i in range(2)]
    subprocess.run([sys.executable, str(INIT), "--rebalance", "--replicas", str(replicas), *dirs], check=True)


def test_resizing_the_cluster_2_1_2_loses_and_repeats_nothing(tmp_path):
    """The runbook's resize path: stop, rebalance the partitions, start with the new count."""
    sts = _statefulset("support-flow")
    name = sts["metadata"]["name"]
    out, data = tmp_path / "out", tmp_path / "in"
    out.mkdir()
    data.mkdir()
    feed = data / "numbers.txt"

    def append(numbers: range) -> None:
        with feed.open("a") as f:
            f.writelines(f"{n}\n" for n in numbers)

    append(range(0, 96))
    _run_cluster(sts, 2, tmp_path, out, feed)
    assert len(_lines(out)) == 96

    _rebalance(tmp_path, name, 1)  # 2 -> 1: every partition on pod 0's volume
    assert not list((tmp_path / f"{name}-1" / "recovery").glob("part-*"))
    append(range(96, 192))
    _run_cluster(sts, 1, tmp_path, out, feed)

    _rebalance(tmp_path, name, 2)  # 1 -> 2: partitions 1 and 3 back to pod 1's volume
    assert sorted(p.name for p in (tmp_path / f"{name}-1" / "recovery").glob("part-*.sqlite3")) == \
        ["part-1.sqlite3", "part-3.sqlite3"]
    append(range(192, 288))
    _run_cluster(sts, 2, tmp_path, out, feed)

    lines = _lines(out)
    assert sorted(int(line.split()[0]) for line in lines) == list(range(288)), "each number exactly once"
    # Per-key state survived both resizes: key 0 counted 1..18 over its 18 numbers.
    counts = sorted(int(line.split()[1]) for line in lines if int(line.split()[0]) % 16 == 0)
    assert counts == list(range(1, 19))


def test_rebalance_refuses_a_missing_or_duplicated_partition(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, pod in ((a, "support-flow-0"), (b, "support-flow-1")):
        subprocess.run([sys.executable, str(INIT), str(d), "--partitions", "4", "--replicas", "2",
                        "--pod-name", pod], check=True, capture_output=True)
    (b / "part-1.sqlite3").unlink()
    result = subprocess.run([sys.executable, str(INIT), "--rebalance", "--replicas", "1", str(a), str(b)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "missing" in result.stderr
    assert sorted(p.name for p in a.glob("part-*")) == ["part-0.sqlite3", "part-2.sqlite3"], "nothing moved"

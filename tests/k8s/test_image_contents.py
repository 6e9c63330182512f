"""What the image ships: the project's wheel holds the production packages and the channel
sandboxes, and neither the load tests nor anything that imports them."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("fte", "flows", "ingress", "sinks", "console", "schema", "sandbox")


def test_wheel_ships_no_load_tests():
    """The packages setuptools puts in the wheel (the Dockerfile builds `pip wheel .`)."""
    import tomllib

    from setuptools import find_namespace_packages

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {p.split(".")[0] for p in find_namespace_packages(str(REPO), include=include)}
    assert tops == set(SHIPPED)
    assert not any(d.startswith("locust") for d in config["project"]["dependencies"])
    assert "RUN rm -rf tests loadtests" in (REPO / "k8s" / "Dockerfile").read_text()


def test_production_code_does_not_import_load_tests():
    offenders = []
    for package in SHIPPED:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offenders += [f"{path.relative_to(REPO)}: {m}" for m in mods
                              if m == "loadtests" or m.startswith("loadtests.")]
    assert offenders == []

"""Helpers for the deployment files: render kustomizations, read the Dockerfile.

No cluster and no container engine exist on the test machines: the files are
rendered by the real kustomize (``kubectl kustomize``), validated offline
against the Kubernetes schemas and KServe's models, linted, and the image's
runtime contract is run from a wheel (test_image_runtime.py).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES = ROOT / "deploy" / "kubernetes"
#: Every kustomization in the repository, by its directory under deploy/kubernetes.
KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/production", "kserve"]
#: The mcp-imagegen kustomizations (the ones holding the server's Deployment).
SERVER_KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/production"]
#: The Kubernetes version the objects are validated against (a recent GA one).
KUBERNETES_VERSION = "1.33.0"


def kustomize_command() -> list[str]:
    """The kustomize on this machine, or a visible skip when there is none.

    ``kubectl kustomize`` first (TESTING.md: kubectl is on these machines and on
    CI), then a standalone ``kustomize``. No PyPI package ships the Go kustomize
    (the ``kustomize`` package there is an unrelated Python reimplementation).
    """
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    pytest.skip(
        "SKIPPED, deployment manifests NOT rendered: neither kubectl nor kustomize "
        "is on PATH (install kubectl to run these checks)"
    )


_rendered: dict[str, list[dict[str, Any]]] = {}


def render(kustomization: str) -> list[dict[str, Any]]:
    """The objects ``kustomize`` renders from ``deploy/kubernetes/<kustomization>``."""
    if kustomization not in _rendered:
        done = subprocess.run(
            [*kustomize_command(), str(KUBERNETES / kustomization)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"kustomize {kustomization}: {done.stderr}"
        _rendered[kustomization] = [
            obj for obj in yaml.safe_load_all(done.stdout) if obj is not None
        ]
    return _rendered[kustomization]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of ``kind`` among ``objects``."""
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def server_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The mcp-imagegen container of the rendered Deployment."""
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == "mcp-imagegen")
    return dict(container)


def config_toml(objects: list[dict[str, Any]]) -> str:
    """The TOML the rendered ConfigMap carries."""
    return str(one(objects, "ConfigMap")["data"]["config.toml"])


@dataclass
class Stage:
    """One ``FROM`` stage of the Dockerfile: its name and instructions."""

    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's stages (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = value.split()
            stages.append(Stage(words[-1] if "AS" in map(str.upper, words) else ""))
        elif stages:
            stages[-1].instructions.append((keyword, value.strip()))
    return stages


def exec_form(value: str) -> list[str]:
    """An exec-form ``ENTRYPOINT``/``CMD`` (a JSON list) as a list."""
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"not exec form: {value}"
    return [str(item) for item in parsed]


def env_of(stage: Stage) -> dict[str, str]:
    """The stage's ``ENV key=value ...`` settings (``$PATH`` left as written)."""
    env: dict[str, str] = {}
    for value in stage.values("ENV"):
        for word in shlex.split(value):
            key, _, setting = word.partition("=")
            env[key] = setting
    return env

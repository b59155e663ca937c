"""The image's runtime contract, without a container engine.

What the Dockerfile does, done here for real: the wheel is built with the same
``pip wheel --no-deps`` (offline, so without build isolation: hatchling comes
from this venv) and installed into a fresh venv; the fresh venv sees exactly the
distributions ``mcp-imagegen[<EXTRAS>]`` requires (resolved from the wheel's
metadata, linked from this venv, since the machine has no index to install from
quickly) and nothing else, so an undeclared runtime dependency fails here. Then
the image's ENTRYPOINT + CMD run with the image's ENV and the dev overlay's TOML
at the image's config path (a temporary directory stands for the container's
root; the port is a free one instead of 8000, which other tests may hold).
"""

from __future__ import annotations

import importlib.metadata
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import anyio
import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import (
    ROOT,
    config_toml,
    dockerfile_stages,
    env_of,
    exec_form,
    render,
    server_container,
)
from tests.http.conftest import STARTUP_POLLS, HttpServer, free_port
from tests.kserve.conftest import kserve_server  # noqa: F401  (a fixture used here)
from tests.kserve.support import KServeServer

pytestmark = pytest.mark.anyio

TOKEN = "deploy-contract-token-5c1e"


def build_wheel(out: Path) -> Path:
    (run,) = [r for r in dockerfile_stages()[0].values("RUN") if "pip wheel" in r]
    assert "pip wheel --no-deps" in run
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("mcp_imagegen-*.whl")
    return wheel


def requirement_closure(wheel: Path, extras: set[str]) -> set[str]:
    """Names of the distributions ``<wheel>[extras]`` needs, recursively."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    own = canonicalize_name(metadata["Name"])
    root = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    needed: set[str] = set()
    todo = [(req, extras) for req in root]
    while todo:
        req, active = todo.pop()
        if req.marker and not any(
            req.marker.evaluate({"extra": extra}) for extra in active | {""}
        ):
            continue
        dep = canonicalize_name(req.name)
        if dep == own:  # all = ["mcp-imagegen[s3,tensors]"]
            todo += [(r, extras | req.extras) for r in root]
            continue
        if dep in needed:
            continue
        needed.add(dep)
        requires = importlib.metadata.distribution(dep).requires or []
        todo += [(Requirement(r), set(req.extras)) for r in requires]
    return needed


def fresh_venv(where: Path, wheel: Path, extras: set[str]) -> Path:
    """A venv with the wheel installed and only its dependencies visible."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True
    )
    python = where / "bin" / "python"
    deps = where / "deps"
    deps.mkdir()
    here = Path(importlib.metadata.distribution("pip").locate_file(""))
    for name in requirement_closure(wheel, extras):
        for file in importlib.metadata.distribution(name).files or []:
            top = file.parts[0]
            link = deps / top
            if top != ".." and not link.exists() and (here / top).exists():
                link.symlink_to(here / top)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return where / "bin"


@dataclass
class Served:
    """The image's command running from the fresh venv, as the dev overlay has it."""

    server: HttpServer
    images: Path
    probes: dict[str, str]
    site_of_package: str
    venv: Path


@pytest.fixture
def served(
    tmp_path: Path,
    kserve_server: KServeServer,  # noqa: F811
) -> Iterator[Served]:
    build, runtime = dockerfile_stages()[0], dockerfile_stages()[-1]
    extras_arg = next(a for a in build.values("ARG") if a.startswith("EXTRAS="))
    extras = {e for e in extras_arg.split("=", 1)[1].split(",") if e}
    bin_dir = fresh_venv(
        tmp_path / "opt-mcp-imagegen", build_wheel(tmp_path / "wheels"), extras
    )
    command = [
        *exec_form(runtime.values("ENTRYPOINT")[0]),
        *exec_form(runtime.values("CMD")[0]),
    ]
    image_env = env_of(runtime)
    dev = render("overlays/dev")
    container = server_container(dev)
    # The container's filesystem, under tmp_path: the ConfigMap mounted at the
    # image's config path, the PVC at the TOML's storage directory, /tmp.
    root = tmp_path / "root"
    config = root / image_env["MCP_IMAGEGEN_CONFIG"].lstrip("/")
    config.parent.mkdir(parents=True)
    toml = config_toml(dev)
    directory = re.search(r'^directory = "([^"]+)"', toml, re.M)
    assert directory
    images = root / directory[1].lstrip("/")
    images.mkdir(parents=True)
    config.write_text(toml.replace(directory[1], str(images)), encoding="utf-8")
    (root / "tmp").mkdir()
    port = free_port()
    argv = [str(port) if arg == "8000" else arg for arg in command]
    env = {
        **{
            key: value.replace("/opt/mcp-imagegen/bin", str(bin_dir)).replace(
                "$PATH", "/usr/bin:/bin"
            )
            for key, value in image_env.items()
        },
        "HOME": str(root / "tmp"),
        "MCP_IMAGEGEN_CONFIG": str(config),
        # The Secret's key (deployment.yaml) ...
        "MCP_IMAGEGEN_SERVER__AUTH__TOKENS": TOKEN,
        # ... and the InferenceService, played by the real KServe test server.
        "MCP_IMAGEGEN_BACKENDS__SDXL__URL": kserve_server.url,
        "MCP_IMAGEGEN_BACKENDS__SDXL__MODEL": "sd-v1",
    }
    assert "MCP_IMAGEGEN_SERVER__AUTH__TOKENS" in {v["name"] for v in container["env"]}
    # What runs is the wheel in the fresh venv, found on the image's PATH.
    site_of_package = subprocess.run(
        ["python", "-c", "import mcp_imagegen; print(mcp_imagegen.__file__)"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    log = tmp_path / "server.log"
    with log.open("wb") as errlog:
        # argv[0] is looked up on the image's PATH (env's, not this process's).
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=root / "tmp",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
    server = HttpServer(process, port, log)
    try:
        for _ in range(STARTUP_POLLS):
            assert process.poll() is None, server.log_text()
            try:
                if httpx.get(server.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield Served(
            server,
            images,
            {
                probe: container[probe]["httpGet"]["path"]
                for probe in ("startupProbe", "livenessProbe", "readinessProbe")
            },
            site_of_package,
            bin_dir.parent,
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_the_image_serves_the_dev_overlay(served: Served) -> None:
    server = served.server
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient(timeout=30) as client:
        answers = {
            probe: await client.get(server.base + path)
            for probe, path in served.probes.items()
        }
        anonymous = await client.post(server.url, json=ping)
        in_cluster = await client.post(
            server.url,
            json=ping,
            headers={
                # The Service's name, as a client in the cluster sends it.
                "Host": f"mcp-imagegen.mcp-imagegen.svc.cluster.local:{server.port}",
                "Authorization": f"Bearer {TOKEN}",
                "Accept": "application/json, text/event-stream",
            },
        )
    with anyio.fail_after(120):
        async with server.session(Authorization=f"Bearer {TOKEN}") as session:
            result = await session.call_tool(
                "generate_image", {"prompt": "a harbour", "width": 64, "height": 64}
            )
    # Kubernetes stops a pod with SIGTERM: the drain ends with exit 0.
    server.process.send_signal(signal.SIGTERM)
    exit_code = await anyio.to_thread.run_sync(server.process.wait, 60)

    assert {p: a.status_code for p, a in answers.items()} == dict.fromkeys(
        served.probes, 200
    )
    assert anonymous.status_code == 401
    assert "Bearer" in anonymous.headers["www-authenticate"]
    assert in_cluster.status_code == 200, in_cluster.text
    assert not result.is_error, result
    [stored] = result.structured_content["images"]  # type: ignore[index]
    assert list(served.images.rglob(f"{stored['id']}.*"))
    assert exit_code == 0
    assert TOKEN not in server.log_text()
    assert served.site_of_package.startswith(str(served.venv))

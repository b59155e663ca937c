"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``)
against ``mcp-imagegen serve --transport http``.

Only the scenarios that need none of the suite's own fixture tools apply to this
server; the others call tools such as ``test_simple_text`` that it does not have.
The suite needs Node 22, installed with it into ``.cache/node22`` (``make test``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.http.conftest import HttpServer, StartServer
from tests.node.tools import NodeTools, conformance_result, node_tools

#: Scenarios that apply to a server without the suite's fixture tools, and pass.
SCENARIOS = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
)


@pytest.fixture
def tools() -> NodeTools:
    return node_tools()


def run_scenario(
    tools: NodeTools, server: HttpServer, scenario: str, home: Path
) -> tuple[tuple[int, int, int], str]:
    """Run one scenario; return ``(passed, total, failed)`` and the suite's output."""
    completed = subprocess.run(
        [
            str(tools.conformance),
            "server",
            "--url",
            server.url,
            "--scenario",
            scenario,
        ],
        env=tools.env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    return conformance_result(output), output


def test_the_conformance_suite_passes_every_scenario_that_applies(
    tools: NodeTools, start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()

    failures = {}
    for scenario in SCENARIOS:
        (passed, total, failed), output = run_scenario(
            tools, server, scenario, tmp_path / "home"
        )
        if failed or total == 0 or passed != total:
            failures[scenario] = output

    assert not failures, "\n\n".join(f"== {k}\n{v}" for k, v in failures.items())
    assert server.process.poll() is None


def test_the_conformance_suite_sets_the_logging_level(
    tools: NodeTools, start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()

    (passed, total, failed), output = run_scenario(
        tools, server, "logging-set-level", tmp_path / "home"
    )

    assert (passed, failed) == (total, 0), output

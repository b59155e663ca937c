"""Meta-tests: every setting, hook and interface is documented.

Like datasette's documentation tests: adding a setting or a hook without
documenting it fails the suite.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from mcp_imagegen import hookspecs
from mcp_imagegen._config import Settings, settings_from_dict
from mcp_imagegen._plugins import load_plugins
from mcp_imagegen.interfaces import (
    ImageServiceAPI,
    ImageStorage,
    InferenceBackend,
    PostProcessor,
)
from mcp_imagegen.models import Style

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "config.example.toml").read_text()
DOCS = {path.name: path.read_text() for path in (ROOT / "docs").glob("*.md")}
BUILTIN_PACKAGES = {
    f"mcp_imagegen_{name}"
    for name in ("placeholder", "file", "kserve", "s3", "imageops")
}
CORE_SECTIONS = [
    "server",
    "server.http",
    "limits",
    "generation",
    "storage",
    "logging",
    "plugins",
    "inputs",
]
# Where each kind of component documents its settings.
COMPONENT_DOCS = {
    "backend": ["configuration.md", "kserve.md"],
    "storage": ["configuration.md", "storage.md"],
    "postprocessor": ["postprocessing.md"],
}


def _example_section(name: str) -> str:
    """Text of ``[name]`` in config.example.toml, up to the next table header."""
    match = re.search(
        rf"^\[{re.escape(name)}\][^\n]*\n(.*?)(?=^#? ?\[|\Z)", EXAMPLE, re.M | re.S
    )
    assert match, f"config.example.toml has no [{name}] table"
    return match.group(1)


def _mentions_key(text: str, key: str) -> bool:
    return re.search(rf"^\s*#?\s*{re.escape(key)}\s*=", text, re.M) is not None


def test_config_example_is_valid_and_matches_the_defaults() -> None:
    data = tomllib.loads(EXAMPLE)

    settings = settings_from_dict(data)

    defaults = Settings.model_construct()
    for section in ["server", "limits", "generation", "logging", "plugins", "inputs"]:
        assert getattr(settings, section) == getattr(defaults, section), section


@pytest.mark.parametrize("section", CORE_SECTIONS)
def test_every_core_setting_is_in_config_example_and_docs(section: str) -> None:
    model: object = Settings
    for part in section.split("."):
        assert isinstance(model, type) and issubclass(model, BaseModel)
        model = model.model_fields[part].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    text = _example_section(section)
    for field, info in model.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            _check_nested_table(f"{section}.{field}", nested)
            continue
        assert _mentions_key(text, field), (
            f"[{section}] {field} missing from config.example.toml"
        )
        assert f"`{field}`" in DOCS["configuration.md"], (
            f"{section}.{field} not in configuration.md"
        )


def _check_nested_table(name: str, model: type[BaseModel]) -> None:
    """A sub-table (``[server.auth]``): its own example table and doc section."""
    text = _example_section(name)
    for field in model.model_fields:
        assert _mentions_key(text, field), (
            f"[{name}] {field} missing from config.example.toml"
        )
        assert f"`{field}`" in DOCS["configuration.md"], (
            f"{name}.{field} not in configuration.md"
        )
    assert f"## `[{name}]`" in DOCS["configuration.md"], name


def test_every_style_key_is_in_config_example_and_docs() -> None:
    # [styles.<name>] tables are user-named, so the example shows one commented.
    example = EXAMPLE.split("# [styles.poster]", 1)[1]
    docs = DOCS["configuration.md"].split("## `[styles.<name>]`", 1)[1]
    for field in Style.model_fields:
        assert _mentions_key(example, field), f"styles: {field} not in the example"
        assert f"`{field}`" in docs, f"styles: {field} not in configuration.md"


def _component_types() -> list[tuple[str, str, type]]:
    manager = load_plugins()
    found = []
    for kind in ("backend", "storage", "postprocessor"):
        for name, cls in manager.component_types(kind).items():  # type: ignore[arg-type]
            if cls.__module__.split(".")[0] in BUILTIN_PACKAGES:
                found.append((kind, name, cls))
    return found


@pytest.mark.parametrize(
    ("kind", "name", "cls"),
    [pytest.param(*t, id=f"{t[0]}-{t[1]}") for t in _component_types()],
)
def test_every_builtin_component_setting_is_documented(
    kind: str, name: str, cls: type
) -> None:
    docs = "".join(DOCS.get(doc, "") for doc in COMPONENT_DOCS[kind])
    for field in cls.Settings.model_fields:
        assert _mentions_key(EXAMPLE, field), (
            f"{kind} {name}: {field} not in config.example.toml"
        )
        assert f"`{field}`" in docs, (
            f"{kind} {name}: {field} not in {COMPONENT_DOCS[kind]}"
        )


def test_every_hook_is_documented_in_plugins_md() -> None:
    hooks = [
        name for name in dir(hookspecs) if name.startswith(("register_", "image_"))
    ]

    assert hooks
    for hook in hooks:
        assert f"### `{hook}(" in DOCS["plugins.md"], f"hook {hook} not documented"


@pytest.mark.parametrize(
    "interface", [InferenceBackend, ImageStorage, PostProcessor, ImageServiceAPI]
)
def test_every_interface_method_is_documented_in_plugins_md(interface: type) -> None:
    methods = [
        name
        for name, value in vars(interface).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    ]

    assert f"### `{interface.__name__}`" in DOCS["plugins.md"]
    for method in methods:
        assert (
            f"`{method}" in DOCS["plugins.md"]
            or f"`async {method}" in DOCS["plugins.md"]
        ), f"{interface.__name__}.{method} not documented"


def test_readme_starts_with_the_two_front_door_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]

    assert "make run" in first_block
    assert "make test" in first_block


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings (lower case, spaces to -)."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", markdown, re.M)
    }


def test_relative_links_in_the_docs_lead_somewhere() -> None:
    pages = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted(ROOT.glob("examples/*/README.md")),
    ]
    checked, broken = 0, []
    for page in pages:
        # Links inside code blocks are examples, not links.
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
                continue
            path, _, fragment = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            checked += 1
            if not target.exists():
                broken.append(f"{page.name}: {link} (no such file)")
            elif fragment and target.suffix == ".md":
                if fragment not in _anchors(target.read_text()):
                    broken.append(f"{page.name}: {link} (no such heading)")

    assert checked > 50
    assert not broken, broken

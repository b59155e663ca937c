"""Hypothesis strategies and checks shared by the fuzz tests and bench/soak.py.

Three surfaces are fuzzed: MCP tool arguments, configuration (TOML files, raw
bytes, ``MCP_IMAGEGEN_*`` environment values) and KServe response bodies.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
from typing import Any

from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, CallToolResult
from PIL import Image

from tests.soak.workload import is_crash_text, result_text

# -- JSON-ish values ------------------------------------------------------------

#: Values that tend to break validation: edges of int sizes, traversal, NUL, ...
SPECIAL_SCALARS: list[Any] = [
    0,
    -1,
    7,
    8,
    64,
    2**31,
    2**63,
    -(2**63) - 1,
    10**30,
    -(10**30),
    0.5,
    1e308,
    -0.0,
    "",
    " ",
    "\x00",
    "../../etc/passwd",
    "image://x",
    "😀" * 10,
    "a" * 5000,
    "png",
    "jpeg",
    "webp",
    "gif",
    "none",
    "full",
    "preview",
    "placeholder",
    "resize",
    "metadata",
    "20261126T034442123-3f9a1c2b7d4e",
    True,
    False,
    None,
]

# Lone surrogates cannot be encoded as UTF-8 anywhere (JSON, env, files).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)

SCALARS = st.one_of(
    st.sampled_from(SPECIAL_SCALARS),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)

JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=8,
)


def tool_arguments(
    parameters: list[str], base: dict[str, Any] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Random argument dicts for a tool: its own names plus unknown ones.

    Half of them start from ``base`` (a valid call) with one to three arguments
    replaced or added, so the fuzzing reaches past the SDK's type checks.
    """
    known = st.fixed_dictionaries(
        {}, optional={name: JSON_VALUES for name in parameters}
    )
    unknown = st.dictionaries(TEXT.filter(bool), JSON_VALUES, max_size=2)
    wild = st.builds(lambda a, b: {**b, **a}, known, unknown)
    if not base or not parameters:
        return wild
    changes = st.dictionaries(
        st.sampled_from(parameters) | TEXT.filter(bool),
        JSON_VALUES,
        min_size=1,
        max_size=3,
    )
    return wild | changes.map(lambda change: {**base, **change})


def check_tool_answer(
    tool: str, arguments: dict[str, Any], answer: CallToolResult | Exception
) -> str | None:
    """Return what is wrong with a fuzzed tool call's answer, or ``None``.

    A result, or an ``isError`` result with a non-empty message that hides no
    crash, is fine; so is a JSON-RPC error other than "internal error" (the
    request itself was refused). Anything else breaks the invariant.
    """
    shown = repr(arguments)[:200]
    if isinstance(answer, MCPError):
        if answer.error.code == INTERNAL_ERROR or is_crash_text(str(answer)):
            return f"{tool}({shown}) -> JSON-RPC internal error: {answer}"
        return None
    if isinstance(answer, Exception):
        return f"{tool}({shown}) raised {type(answer).__name__}: {answer}"
    if not answer.is_error:
        return None
    text = result_text(answer)
    if not text.strip():
        return f"{tool}({shown}) -> error without a message"
    if is_crash_text(text):
        return f"{tool}({shown}) -> {text[:300]}"
    return None


# -- configuration ----------------------------------------------------------------

#: Keys the real configuration has, per section, plus a few that do not exist.
CONFIG_KEYS: dict[str, list[str]] = {
    "server": ["name", "preview_max_side", "max_concurrency", "queue_timeout"],
    "limits": ["max_side", "side_multiple", "max_images", "max_steps"],
    "generation": ["backend", "postprocess", "width", "height", "output_format"],
    "storage": [
        "backend",
        "type",
        "max_age",
        "cleanup_interval",
        "orphan_grace",
        "file",
    ],
    "backends": ["placeholder", "sdxl", "x"],
    "postprocess": ["resize", "watermark", "convert", "nope"],
    "logging": ["level", "format"],
    "plugins": ["disabled"],
    "typo": ["key"],
}


def _toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """Render a value as TOML (inline tables and arrays; JSON strings are TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}"
    return '""'  # TOML has no null


def toml_document(doc: dict[str, dict[str, Any]]) -> str:
    """Render ``{section: {key: value}}`` as a TOML file, one table per section."""
    lines: list[str] = []
    for section, table in doc.items():
        lines.append(f"[{_toml_key(section)}]")
        lines += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


CONFIG_DOCS = st.dictionaries(
    st.sampled_from(sorted(CONFIG_KEYS)),
    st.sampled_from(sorted(CONFIG_KEYS)).flatmap(
        lambda section: st.dictionaries(
            st.sampled_from(CONFIG_KEYS[section]) | TEXT.filter(bool),
            JSON_VALUES,
            max_size=3,
        )
    ),
    max_size=4,
)


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    """A configuration file's bytes: TOML, broken TOML, or not UTF-8 at all."""
    text = toml_document(draw(CONFIG_DOCS))
    kind = draw(st.sampled_from(["toml", "latin-1", "binary", "cut", "text"]))
    if kind == "latin-1":  # e.g. a file saved by an editor in the old encoding
        return text.encode("utf-8") + '[server]\nname = "café"\n'.encode("latin-1")
    if kind == "binary":
        return draw(st.binary(max_size=200))
    if kind == "cut":
        data = text.encode("utf-8")
        return data[: draw(st.integers(0, len(data)))]
    if kind == "text":
        return draw(TEXT).encode("utf-8")
    return text.encode("utf-8")


ENV_NAMES = st.sampled_from(
    [
        "MCP_IMAGEGEN_GENERATION__POSTPROCESS",
        "MCP_IMAGEGEN_GENERATION__BACKEND",
        "MCP_IMAGEGEN_LIMITS__MAX_SIDE",
        "MCP_IMAGEGEN_SERVER__NAME",
        "MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE",
        "MCP_IMAGEGEN_STORAGE__MAX_AGE",
        "MCP_IMAGEGEN_STORAGE__TYPE",
        "MCP_IMAGEGEN_STORAGE__S3__BUCKET",
        "MCP_IMAGEGEN_BACKENDS__SDXL__URL",
        "MCP_IMAGEGEN_BACKENDS",
        "MCP_IMAGEGEN_LOGGING__LEVEL",
        "MCP_IMAGEGEN_PLUGINS__DISABLED",
        "MCP_IMAGEGEN_SERVER",
        "MCP_IMAGEGEN_SERVER_NAME",
        "MCP_IMAGEGEN_NOPE",
    ]
)
ENV_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
ENV_VALUES = st.one_of(
    ENV_TEXT,
    st.sampled_from(
        ["resize,metadata", "[1,", "{}", "[]", '{"a": 1}', "null", "1e999", "-1", ""]
    ),
    JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False)),
)
ENVIRONMENTS = st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=3)


# -- KServe bodies ----------------------------------------------------------------


def tiny_png(side: int = 4) -> bytes:
    """A real PNG to build almost-valid answers from."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


_PNG = tiny_png()
IMAGE_TEXT = st.one_of(
    st.just(base64.b64encode(_PNG).decode()),
    st.integers(0, len(_PNG)).map(lambda n: base64.b64encode(_PNG[:n]).decode()),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.just("data:image/png;base64," + base64.b64encode(_PNG).decode()),
    st.just("data:image/png," + _PNG.decode("latin-1")),
    TEXT,
)
IMAGE_VALUES = st.recursive(
    IMAGE_TEXT | SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["b64", "image", "format", "data"]), children)
    ),
    max_leaves=6,
)
V1_KEYS = ["image", "image_b64", "b64_json", "b64", "images", "data", "bytes", "x"]
V1_DOCS = st.fixed_dictionaries(
    {
        "predictions": st.lists(
            st.dictionaries(st.sampled_from(V1_KEYS), IMAGE_VALUES, max_size=3)
            | IMAGE_VALUES,
            max_size=3,
        )
    }
) | st.dictionaries(st.sampled_from(["predictions", "error", "x"]), JSON_VALUES)

V2_DATATYPES = ["BYTES", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BOOL"]
SHAPES = st.lists(
    st.one_of(st.integers(-2, 8), st.sampled_from([2**31, 2**62, 10**12])),
    max_size=4,
)
V2_OUTPUT = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["image", "generated_image", "x"]) | TEXT,
        "datatype": st.sampled_from(V2_DATATYPES) | TEXT,
        "shape": SHAPES | JSON_VALUES,
    },
    optional={
        "data": st.lists(st.integers(-300, 300) | st.floats() | IMAGE_TEXT, max_size=64)
        | JSON_VALUES,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "content_type"]), JSON_VALUES
        ),
    },
)
# Close to what real predictors send: a BYTES image, or a small UINT8/FP32 tensor.
V2_NEAR_VALID = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.just("image"),
            "datatype": st.just("BYTES"),
            "shape": st.sampled_from([[1], [1, 1], [2], []]),
            "data": st.lists(IMAGE_TEXT, min_size=1, max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {
            "name": st.just("generated_image"),
            "datatype": st.sampled_from(["UINT8", "FP32", "INT64", "FP16"]),
            "shape": st.sampled_from([[1, 2, 2, 3], [1, 3, 2, 2], [2, 2, 3], [2, 2]]),
            "data": st.lists(
                st.integers(-300, 300) | st.floats(-2, 2), min_size=4, max_size=12
            ),
        }
    ),
)
V2_DOCS = st.fixed_dictionaries(
    {"outputs": st.lists(V2_NEAR_VALID | V2_OUTPUT, max_size=3) | JSON_VALUES},
    optional={"model_name": TEXT, "error": TEXT},
)


@st.composite
def v1_bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A V1 answer body and its content type."""
    content_type = draw(
        st.sampled_from(
            [None, "application/json", "image/png", "application/octet-stream", "x/y"]
        )
    )
    kind = draw(st.sampled_from(["doc", "json", "bytes", "png"]))
    if kind == "doc":
        body = json.dumps(draw(V1_DOCS), ensure_ascii=False).encode()
    elif kind == "json":
        body = json.dumps(draw(JSON_VALUES)).encode()
    elif kind == "png":
        body = _PNG[: draw(st.integers(0, len(_PNG)))]
    else:
        body = draw(st.binary(max_size=300))
    return body, content_type


@st.composite
def v2_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A V2 answer body (JSON, maybe with a binary tail) and its headers."""
    kind = draw(st.sampled_from(["doc", "json", "bytes"]))
    if kind == "doc":
        head = json.dumps(draw(V2_DOCS), ensure_ascii=False).encode()
    elif kind == "json":
        head = json.dumps(draw(JSON_VALUES)).encode()
    else:
        head = draw(st.binary(max_size=300))
    headers: dict[str, str] = {}
    body = head
    if draw(st.booleans()):  # the binary tensor extension
        tail = draw(
            st.one_of(
                st.binary(max_size=64),
                st.just(struct.pack("<I", len(_PNG)) + _PNG),
                st.just(struct.pack("<I", 2**31) + _PNG),
            )
        )
        body = head + tail
        length = draw(
            st.one_of(
                st.just(str(len(head))),
                st.integers(-5, len(body) + 5).map(str),
                TEXT.filter(lambda t: t.isascii()),
            )
        )
        headers["inference-header-content-length"] = length
    return body, headers

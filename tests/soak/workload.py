"""A mixed MCP workload that keeps a ledger of every acknowledged image.

Shared by the bounded tests in ``tests/soak`` and the full runs of ``bench/soak.py``.
Workers call generate/list/get/delete/transform concurrently over one MCP client;
every image the server acknowledges is remembered (id, size, sha256 when the full
bytes came back), deletes are tracked, and :func:`verify` checks at the end that
each surviving image is still listed, loadable and byte-identical to its record.

Errors are counted by message class. A result is *unexpected* when it breaks an
invariant whatever the scenario: an "internal error" text, a traceback, a call
that raises instead of answering, a ``list_images`` that fails because of a
concurrent delete, or "not found" for an image nobody deleted.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp
from mcp.types import (
    BlobResourceContents,
    CallToolResult,
    ImageContent,
    TextContent,
    TextResourceContents,
)

#: Substrings that mean the server hid a crash behind a generic message.
CRASH_MARKERS = ("internal error", "traceback", "exceptiongroup", "exception group")
#: Post-processing chains transform_image is asked for (all need no font or file).
TRANSFORMS = (["strip_metadata"], ["resize"], ["metadata"], ["strip_metadata"])
OUTPUT_FORMATS = (None, "png", "jpeg", "webp")


#: ``(call number, rng) -> (extra prompt text, must succeed)``.
PromptTag = Callable[[int, random.Random], tuple[str, bool]]


@dataclass(frozen=True)
class Ack:
    """An image the server said it stored."""

    id: str
    byte_size: int
    mime_type: str
    sha256: str | None  # known when the call returned the full image


@dataclass
class Ledger:
    """Everything the workload saw; :attr:`unexpected` empty means no invariant broke.

    Attributes:
        strict: Any error other than "not found" for an image being deleted is
            unexpected (no faults are injected in the scenario).
    """

    strict: bool = True
    #: Prefix of error classes, to tell phases apart (e.g. "[outage] ").
    phase: str = ""
    live: dict[str, Ack] = field(default_factory=dict)
    deleting: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    #: Deletes that failed (storage down): the image may or may not be gone.
    uncertain: set[str] = field(default_factory=set)
    acknowledged: int = 0
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    unexpected: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def flag(self, what: str) -> None:
        """Record a broken invariant (kept short: one line each)."""
        self.unexpected.append(what[:300])

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly digest for reports and assertion messages."""
        return {
            "calls": dict(self.calls),
            "acknowledged": self.acknowledged,
            "live": len(self.live),
            "deleted": len(self.deleted),
            "errors": dict(self.errors.most_common()),
            "unexpected": self.unexpected[:20],
            "unexpected_count": len(self.unexpected),
            "lost": self.lost[:20],
            "lost_count": len(self.lost),
        }


def error_class(message: str) -> str:
    """Group error messages: ids, numbers and quoted values become placeholders."""
    text = message.strip().splitlines()[0] if message.strip() else "(empty)"
    text = re.sub(r"\d{8}T\d{9}-[0-9a-f]{12}", "<id>", text)
    text = re.sub(r"\(?\b\w+://[^\s)]+\)?", "<url>", text)
    text = text.removeprefix("Error executing tool ")
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:140]


def is_crash_text(message: str) -> bool:
    """Whether a message hides a crash instead of saying what went wrong."""
    lowered = message.lower()
    return any(marker in lowered for marker in CRASH_MARKERS)


def result_text(result: CallToolResult) -> str:
    """The text blocks of a result, joined."""
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def _images_of(result: CallToolResult) -> list[dict[str, Any]]:
    structured = result.structured_content or {}
    images = structured.get("images")
    return list(images) if isinstance(images, list) else []


class Workload:
    """Drives one MCP client with a random mix of tool calls.

    Args:
        client: An entered MCP client.
        ledger: Where results go.
        seed: Seed of the call mix (runs are reproducible up to scheduling).
        sizes: Image sides to ask for.
        prompt_tag: Called with the call number and the random generator before
            each generate call; returns extra prompt text (the fault scenario
            puts its fault instructions there) and whether the call must succeed.
    """

    def __init__(
        self,
        client: mcp.Client,
        ledger: Ledger,
        *,
        seed: int = 0,
        sizes: tuple[int, ...] = (64, 96, 128),
        prompt_tag: PromptTag | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.sizes = sizes
        self.prompt_tag = prompt_tag
        self.counter = 0

    async def run(self, calls: int, concurrency: int) -> None:
        """Make ``calls`` tool calls with ``concurrency`` workers."""
        remaining = [calls]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                await self.one_call()

        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(worker)

    async def one_call(self) -> None:
        """Pick an operation by weight (generate only until images exist)."""
        ops = [self.generate, self.list_images, self.get_image, self.delete_image]
        ops.append(self.transform_image)
        weights = [35, 20, 20, 15, 10] if self.ledger.live else [1, 1, 0, 0, 0]
        [op] = self.rng.choices(ops, weights)
        await op()

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult | None:
        """Call a tool; an exception (the server did not answer) is unexpected."""
        self.ledger.calls[tool] += 1
        try:
            result = await self.client.call_tool(tool, arguments)
        except Exception as exc:
            self.ledger.errors[
                f"{self.ledger.phase}{tool}: raised {type(exc).__name__}"
            ] += 1
            self.ledger.flag(f"{tool} raised {type(exc).__name__}: {exc}")
            return None
        if result.is_error:
            text = result_text(result)
            self.ledger.errors[f"{self.ledger.phase}{tool}: {error_class(text)}"] += 1
            if is_crash_text(text):
                self.ledger.flag(f"{tool} {arguments}: {text}")
        return result

    def _pick(self) -> str | None:
        pool = list(self.ledger.live)
        return self.rng.choice(pool) if pool else None

    def _acknowledge(self, result: CallToolResult, inline: str) -> None:
        infos = _images_of(result)
        shown = [b for b in result.content if isinstance(b, ImageContent)]
        for index, info in enumerate(infos):
            sha = None
            if inline == "full" and index < len(shown):
                data = base64.b64decode(shown[index].data)
                if len(data) == info["byte_size"]:  # not a capped-down preview
                    sha = hashlib.sha256(data).hexdigest()
            ack = Ack(info["id"], info["byte_size"], info["mime_type"], sha)
            self.ledger.live[ack.id] = ack
            self.ledger.acknowledged += 1

    async def generate(self) -> None:
        """generate_image with a random small size, format and inline mode."""
        self.counter += 1
        tag, must_succeed = ("", False)
        if self.prompt_tag is not None:
            tag, must_succeed = self.prompt_tag(self.counter, self.rng)
        side = self.rng.choice(self.sizes)
        inline = self.rng.choice(["none", "preview", "full"])
        arguments: dict[str, Any] = {
            "prompt": f"soak call {self.counter} {tag}".strip(),
            "width": side,
            "height": self.rng.choice(self.sizes),
            "num_images": self.rng.choice([1, 1, 1, 2]),
            "seed": self.rng.randrange(2**32),
            "inline": inline,
        }
        output_format = self.rng.choice(OUTPUT_FORMATS)
        if output_format:
            arguments["output_format"] = output_format
        result = await self.call("generate_image", arguments)
        if result is None:
            return
        if result.is_error:
            if self.ledger.strict or must_succeed:
                self.ledger.flag(f"generate_image failed: {result_text(result)}")
            return
        self._acknowledge(result, inline)

    async def list_images(self) -> None:
        """list_images, following next_cursor for up to three pages."""
        cursor: str | None = None
        limit = self.rng.choice([1, 5, 20, 50])
        for _ in range(self.rng.randint(1, 3)):
            arguments: dict[str, Any] = {"limit": limit}
            if cursor:
                arguments["cursor"] = cursor
            result = await self.call("list_images", arguments)
            if result is None:
                return
            if result.is_error:
                text = result_text(result)
                if self.ledger.strict or "no image with id" in text.lower():
                    self.ledger.flag(f"list_images failed: {text}")
                return
            cursor = (result.structured_content or {}).get("next_cursor")
            if not cursor:
                return

    def _not_found_ok(self, image_id: str, text: str) -> bool:
        """ "not found" is fine only for an image someone is deleting or deleted."""
        gone = self.ledger.deleting | self.ledger.deleted | self.ledger.uncertain
        if "no image with id" in text.lower():
            if image_id in gone:
                return True
            self.ledger.flag(f"acknowledged image {image_id} not found: {text}")
            return False
        if self.ledger.strict:
            self.ledger.flag(f"unexpected error for {image_id}: {text}")
        return False

    async def get_image(self) -> None:
        """get_image of a live image (or, sometimes, of one just deleted)."""
        image_id = self._pick()
        recent = sorted(self.ledger.deleting | self.ledger.deleted)
        if recent and self.rng.random() < 0.1:
            image_id = self.rng.choice(recent)
        if image_id is None:
            return
        inline = self.rng.choice(["none", "preview", "full"])
        result = await self.call("get_image", {"image_id": image_id, "inline": inline})
        if result is None:
            return
        if result.is_error:
            self._not_found_ok(image_id, result_text(result))
            return
        ack = self.ledger.live.get(image_id)
        shown = [b for b in result.content if isinstance(b, ImageContent)]
        if inline == "full" and ack and ack.sha256 and shown:
            data = base64.b64decode(shown[0].data)
            if len(data) == ack.byte_size and hashlib.sha256(data).hexdigest() != (
                ack.sha256
            ):
                self.ledger.flag(f"get_image {image_id}: bytes changed")

    async def delete_image(self) -> None:
        """delete_image of a live image; nobody else deletes it meanwhile."""
        image_id = self._pick()
        if image_id is None:
            return
        self.ledger.live.pop(image_id)
        self.ledger.deleting.add(image_id)
        result = await self.call("delete_image", {"image_id": image_id})
        self.ledger.deleting.discard(image_id)
        if result is not None and not result.is_error:
            self.ledger.deleted.add(image_id)
            return
        text = result_text(result) if result is not None else ""
        if "no image with id" in text.lower():
            self.ledger.flag(f"delete_image: acknowledged {image_id} missing: {text}")
        elif self.ledger.strict and result is not None:
            self.ledger.flag(f"delete_image {image_id} failed: {text}")
        self.ledger.uncertain.add(image_id)

    async def transform_image(self) -> None:
        """transform_image of a live image with a small chain."""
        image_id = self._pick()
        if image_id is None:
            return
        inline = self.rng.choice(["none", "preview", "full"])
        arguments: dict[str, Any] = {
            "image_id": image_id,
            "postprocess": list(self.rng.choice(TRANSFORMS)),
            "inline": inline,
        }
        result = await self.call("transform_image", arguments)
        if result is None:
            return
        if result.is_error:
            self._not_found_ok(image_id, result_text(result))
            return
        self._acknowledge(result, inline)


async def read_image(client: mcp.Client, image_id: str) -> tuple[bytes, dict[str, Any]]:
    """Return an image's bytes and record, read through its MCP resources."""
    blob = await client.read_resource(f"image://{image_id}", cache_mode="bypass")
    meta = await client.read_resource(
        f"image://{image_id}/metadata", cache_mode="bypass"
    )
    [contents] = blob.contents
    assert isinstance(contents, BlobResourceContents), contents
    [record] = meta.contents
    assert isinstance(record, TextResourceContents), record
    return base64.b64decode(contents.blob), json.loads(record.text)


async def verify(client: mcp.Client, ledger: Ledger, *, attempts: int = 1) -> None:
    """Check every surviving acknowledged image: listed, loadable, byte-identical.

    Args:
        client: An entered MCP client of the same server (or store).
        ledger: The workload's ledger; problems go to ``ledger.lost``.
        attempts: Tries per image (more than one after an outage, so a last
            transient error is not taken for a loss).
    """
    for image_id, ack in sorted(ledger.live.items()):
        problem = ""
        for _ in range(attempts):
            try:
                data, record = await read_image(client, image_id)
            except Exception as exc:
                problem = f"{image_id}: not loadable: {type(exc).__name__}: {exc}"
                await anyio.sleep(0.2)
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest != record.get("sha256") or len(data) != ack.byte_size:
                problem = f"{image_id}: bytes differ from the record"
            elif ack.sha256 is not None and digest != ack.sha256:
                problem = f"{image_id}: bytes differ from what was acknowledged"
            else:
                problem = ""
            break
        if problem:
            ledger.lost.append(problem[:300])
    listed = await list_all(client)
    for image_id in sorted(set(ledger.live) - listed):
        ledger.lost.append(f"{image_id}: loadable but missing from list_images")


async def list_all(client: mcp.Client, *, max_pages: int = 10_000) -> set[str]:
    """Every id list_images reports, page by page (bounded)."""
    ids: set[str] = set()
    cursor: str | None = None
    for _ in range(max_pages):
        arguments: dict[str, Any] = {"limit": 100}
        if cursor:
            arguments["cursor"] = cursor
        result = await client.call_tool("list_images", arguments)
        assert not result.is_error, result_text(result)
        page = result.structured_content or {}
        ids.update(image["id"] for image in page.get("images", []))
        cursor = page.get("next_cursor")
        if not cursor:
            return ids
    raise AssertionError("list_images keeps returning a next_cursor")

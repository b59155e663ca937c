"""Input images for edit_image and ingest_image: where they may come from.

Always accepted: a stored image (its id or ``image://{id}``) and a
``data:image/...;base64,`` URI. Opt-in, off by default: a local file under
``inputs.allowed_dirs`` and an http(s) URL whose host is in
``inputs.allowed_hosts``, which :mod:`mcp_imagegen._service.fetching` fetches
(with its checks against SSRF).

Errors name the argument and never echo a URL's credentials or query: they show
:func:`~mcp_imagegen._service.fetching.url_origin`, the URL without either.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from PIL import Image

from mcp_imagegen._ids import IMAGE_ID_PATTERN, validate_image_id
from mcp_imagegen._service.fetching import UrlFetcher
from mcp_imagegen.errors import ValidationError
from mcp_imagegen.imaging import ImageDecodeError, open_image, verify_image

if TYPE_CHECKING:
    from mcp_imagegen._config import InputsSettings
    from mcp_imagegen.interfaces import ImageStorage

_IMAGE_ID = re.compile(IMAGE_ID_PATTERN)
_BUFFER_NAME = re.compile(
    r":? ?(cannot identify image file )?<_io\.BytesIO object at 0x[0-9a-f]+>"
)
#: Base64 characters decoded per step (about 1 ms of GIL each; see decode_base64).
#: A data URI no longer than this is decoded on the event loop: a thread hop
#: would cost more.
_BASE64_STEP = 512 * 1024
#: The forms an image argument accepts, for error messages.
ACCEPTED = (
    "a stored image id, an image://{id} URI, a data:image/...;base64, URI, or "
    "(when enabled) a local path or an http(s) URL"
)


@dataclass(frozen=True)
class RawInput:
    """Image bytes as read from a source, not yet decoded.

    Attributes:
        data: The bytes.
        source_image_id: The stored image they are, if any.
        origin: Where outside bytes came from (``"upload"``, ``"file:/a.png"``,
            ``"https://host/path"``); ``None`` for a stored image.
    """

    data: bytes
    source_image_id: str | None = None
    origin: str | None = None


def verify_input(raw: RawInput, argument: str, max_pixels: int) -> Image.Image:
    """Prove ``raw`` a whole image; return it opened (in a worker thread: CPU work).

    A common PNG is proven whole without building its pixels
    (:func:`~mcp_imagegen.imaging.verify_image`), which then decode on first
    access; anything else is decoded fully here.

    Raises:
        ValidationError: naming ``argument`` when the bytes are not a whole,
            readable image, or it has more than ``max_pixels`` pixels.
    """
    try:
        return verify_image(raw.data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise decode_error(exc, argument, max_pixels) from None


def open_input(raw: RawInput, argument: str, max_pixels: int) -> Image.Image:
    """The image's header (format, mode, size), no pixels: microseconds.

    Enough to decide how an input will be used before paying for a check or a
    decode: :func:`verify_input` when its bytes go on as they are,
    :func:`decode_input` when its pixels are needed.

    Raises:
        ValidationError: as :func:`verify_input`, for bytes without a readable
            header or with more than ``max_pixels`` pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            header = Image.open(io.BytesIO(raw.data))  # reads the header only
        if header.width * header.height <= max_pixels:
            return header
    except Exception:
        pass  # verify_input names the problem, in its own words
    return verify_input(raw, argument, max_pixels)


def decode_input(raw: RawInput, argument: str, max_pixels: int) -> Image.Image:
    """Decode ``raw`` fully (in a worker thread: CPU work), under ``max_pixels``.

    A whole decode proves the bytes whole too: for an input whose pixels are
    needed this replaces :func:`verify_input`, which would inflate a PNG once
    to check it and then again to use it.

    Raises:
        ValidationError: as :func:`verify_input`.
    """
    try:
        return open_image(raw.data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise decode_error(exc, argument, max_pixels) from None


def decode_error(exc: Exception, argument: str, max_pixels: int) -> ValidationError:
    """The error for bytes that do not decode: what was wrong and what is accepted."""
    # Pillow names its in-memory file ("<_io.BytesIO object at 0x...>"): noise.
    problem = _BUFFER_NAME.sub("", str(exc)).rstrip(" :.")
    return ValidationError(
        f"{argument}: {problem}. Give a PNG, JPEG, WebP or GIF image "
        f"(at most {max_pixels} pixels, inputs.max_pixels)."
    )


def decode_base64(
    text: str, argument: str, limit: int, step: int | None = None, start: int = 0
) -> bytes:
    """Strict base64 (whitespace ignored) to bytes, ``step`` characters at a time.

    ``text[start:]`` is decoded (``start`` saves copying a data URI's payload).

    Same result and errors as ``base64.b64decode("".join(text.split()),
    validate=True)``, but each step holds the GIL about a millisecond, so the
    event loop and other threads run between steps (the interpreter switches
    threads only between bytecodes, never inside one long C call). Stops as
    soon as the output would pass ``limit`` bytes.

    Raises:
        ValidationError: naming ``argument``, for invalid base64 or more than
            ``limit`` (``inputs.max_bytes``) bytes.
    """
    step = step or _BASE64_STEP
    too_large = ValidationError(
        f"{argument}: the data holds more than inputs.max_bytes = {limit} "
        "bytes. Send a smaller image."
    )
    parts: list[bytes] = []
    # Undecoded characters: the last whole 4-character group and what follows
    # it, and from the first "=" on everything. Padding is legal only at the
    # end, and the standard library's strict rules there are subtle: the tail
    # is decoded by it in one call, so results and errors stay exactly its own.
    carry = ""
    tail: list[str] = []
    chars = 0
    # The last group of a step decoded the fast way (below), already in parts.
    fast_group = ""
    try:
        for begin in range(start, len(text), step):
            piece = text[begin : begin + step]
            if not carry and not tail and len(piece) % 4 == 0 and piece[-1] != "=":
                # The common case, base64 on one line: whole groups, no padding
                # yet. Decoded as they are, without the copies and scans below
                # (a third of the GIL this function held); anything else, or an
                # error, goes the careful way.
                try:
                    decoded = base64.b64decode(piece, validate=True)
                except (binascii.Error, ValueError):
                    pass
                else:
                    chars += len(piece)
                    if chars // 4 * 3 - 2 > limit:
                        raise too_large
                    parts.append(decoded)
                    fast_group = piece[-4:]
                    continue
            if fast_group:
                # Back to the careful way: its last group is undecoded again,
                # so that padding after it means what the standard library says.
                parts[-1] = parts[-1][:-3]
                carry, fast_group = fast_group, ""
            cleaned = "".join(piece.split())
            chars += len(cleaned)
            if chars // 4 * 3 - 2 > limit:  # padding shortens the last group
                raise too_large
            if tail or "=" in cleaned:
                tail.append(cleaned)
                continue
            window = carry + cleaned
            ready = max(0, len(window) // 4 * 4 - 4)
            if ready:
                parts.append(base64.b64decode(window[:ready], validate=True))
            carry = window[ready:]
        rest = carry + "".join(tail)
        if rest:
            parts.append(base64.b64decode(rest, validate=True))
    except (binascii.Error, ValueError):
        raise ValidationError(f"{argument}: the data is not valid base64.") from None
    data = b"".join(parts)  # one copy; bytes.join drops the GIL past 1 MB
    if len(data) > limit:
        raise ValidationError(
            f"{argument}: the data holds {len(data)} bytes, more than "
            f"inputs.max_bytes = {limit}. Send a smaller image."
        )
    return data


class InputReader:
    """Reads input images from the sources ``[inputs]`` allows.

    Args:
        settings: The ``[inputs]`` section.
        storage: Where stored images are loaded from.

    Raises:
        ConfigurationError: when ``inputs.ca_bundle`` cannot be loaded.
    """

    def __init__(self, settings: InputsSettings, storage: ImageStorage) -> None:
        self.settings = settings
        self.storage = storage
        self._decoding: anyio.CapacityLimiter | None = None
        self.urls = UrlFetcher(settings)

    async def read(self, value: str, argument: str) -> RawInput:
        """Read an image argument of any accepted form (see :data:`ACCEPTED`).

        Raises:
            ValidationError: naming ``argument``, for a form not accepted, a
                source not allowed, or bytes over ``inputs.max_bytes``.
            ImageNotFoundError: for a stored image that does not exist.
        """
        text = value.strip()
        lowered = text[:10].lower()
        if lowered.startswith("data:"):
            return await self.read_data(text, argument)
        if lowered.startswith("image://"):
            return await self._read_stored(text[len("image://") :], argument)
        if lowered.startswith(("http://", "https://")):
            return await self.fetch_url(text, argument)
        if lowered.startswith(("file://", "/", "~")):
            return await self.read_path(text, argument)
        if _IMAGE_ID.match(text):
            return await self._read_stored(text, argument)
        raise ValidationError(f"{argument}: not an image reference; give {ACCEPTED}.")

    async def _read_stored(self, image_id: str, argument: str) -> RawInput:
        try:
            checked = validate_image_id(image_id)
        except ValidationError as exc:
            raise ValidationError(f"{argument}: {exc}") from None
        stored = await self.storage.load(checked)
        return RawInput(stored.data, source_image_id=checked)

    # -- data URIs ---------------------------------------------------------------

    async def read_data(self, value: str, argument: str) -> RawInput:
        """Decode a ``data:image/...;base64,`` URI (or bare base64) to bytes.

        A large one is decoded in a worker thread, step by step (see
        :func:`decode_base64`): base64 decoding holds the GIL, and a 20 MB
        upload decoded on the event loop, or in one call, would stall every
        other request for tens of milliseconds.

        Raises:
            ValidationError: for another kind of data URI, invalid base64 or
                more than ``inputs.max_bytes`` bytes.
        """
        if len(value) <= _BASE64_STEP:
            return self._read_data(value, argument)
        if self._decoding is None:  # made here: it belongs to the running loop
            self._decoding = anyio.CapacityLimiter(1)
        # One large decode at a time: decoding holds the GIL, so several threads
        # decode no faster than one, but each one more queues before the event
        # loop for the GIL (four at once lagged it ~55 ms, one ~7 ms).
        return await anyio.to_thread.run_sync(
            self._read_data, value, argument, limiter=self._decoding
        )

    def _read_data(self, value: str, argument: str) -> RawInput:
        start = 0
        if value[:5].lower() == "data:":
            # An offset, not partition(): that would copy megabytes, GIL held.
            comma = value.find(",")
            media = value[5 : max(comma, 0)].lower()
            if comma < 0 or not media.startswith("image/") or ";base64" not in media:
                raise ValidationError(
                    f"{argument}: a data URI must look like "
                    "data:image/png;base64,<base64 data>."
                )
            start = comma + 1
        data = decode_base64(value, argument, self.settings.max_bytes, start=start)
        return RawInput(data, origin="upload")

    # -- local files ---------------------------------------------------------------

    async def read_path(self, value: str, argument: str) -> RawInput:
        """Read a file under one of ``inputs.allowed_dirs``.

        The path is resolved (symlinks, ``..``) before it is checked, so neither
        can lead out of an allowed directory.

        Raises:
            ValidationError: when paths are off, the path is outside every
                allowed directory, not a file, or larger than ``inputs.max_bytes``.
        """
        if not self.settings.allowed_dirs:
            raise ValidationError(
                f"{argument}: reading local files is off; set inputs.allowed_dirs "
                "to the directories images may be read from, or send the image "
                "as a data: URI."
            )
        return await anyio.to_thread.run_sync(self._read_path, value, argument)

    def _read_path(self, value: str, argument: str) -> RawInput:
        text = value[len("file://") :] if value.lower().startswith("file://") else value
        path = Path(text).expanduser()
        if not path.is_absolute():
            raise ValidationError(f"{argument}: give an absolute path.")
        # Resolved before the check: neither a symlink nor ".." leads out. Checked
        # before existence: no telling which files exist outside.
        resolved = path.resolve()
        for directory in self.settings.allowed_dirs:
            base = directory.expanduser().resolve()
            if resolved.is_relative_to(base):
                break
        else:
            raise ValidationError(
                f"{argument}: {path} is not under a directory of inputs.allowed_dirs."
            )
        origin = f"file:/{resolved.relative_to(base).as_posix()}"
        return RawInput(self._read_file(resolved, argument), origin=origin)

    def _read_file(self, path: Path, argument: str) -> bytes:
        limit = self.settings.max_bytes
        try:
            if not path.is_file():
                raise ValidationError(f"{argument}: {path} is not an existing file.")
            with path.open("rb") as file:
                data = file.read(limit + 1)  # never more than the cap
        except OSError as exc:
            raise ValidationError(
                f"{argument}: {path} cannot be read ({exc.strerror or exc})."
            ) from None
        if len(data) > limit:
            raise ValidationError(
                f"{argument}: {path} is larger than inputs.max_bytes = {limit}."
            )
        return data

    # -- URLs ------------------------------------------------------------------------

    async def fetch_url(self, url: str, argument: str) -> RawInput:
        """Download an image from an allowed host (see :class:`UrlFetcher`).

        Raises:
            ValidationError: as :meth:`UrlFetcher.fetch`.
        """
        data, origin = await self.urls.fetch(url, argument)
        return RawInput(data, origin=origin)

"""Helpers every storage needs: id stamps, listing cursors, an extension cache.

Re-exported from the package face (:mod:`mcp_imagegen`); plugins import them from
there, never from this module.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from mcp_imagegen._ids import validate_image_id
from mcp_imagegen.errors import ValidationError
from mcp_imagegen.models import ImageRecord


def id_stamp(moment: datetime) -> str:
    """The time part of the ids of images created at ``moment``.

    Ids compare as strings in creation order, so a storage bounds a range of ids
    (a listing window, the expired part of a retention sweep) by stamps: every id
    of an image created before ``moment``'s millisecond sorts below its stamp.

    Args:
        moment: A time; a naive one is taken as UTC.

    Returns:
        ``YYYYMMDDTHHMMSSmmm`` in UTC, e.g. ``20261126T034442123``.
    """
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}"


def encode_cursor(last_id: str, *, tag: str = "") -> str:
    """Make an opaque listing cursor from the last id of a page.

    Args:
        last_id: The id of the last record on the page.
        tag: A prefix that marks the storage type inside the cursor, so that a
            cursor of another storage type is refused (``""``: no mark).

    Returns:
        URL-safe base64 without padding.
    """
    raw = (tag + last_id).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str,
    *,
    tag: str = "",
    validate: Callable[[object], str] = validate_image_id,
) -> str:
    """Return the id inside a cursor made by :func:`encode_cursor` with ``tag``.

    Args:
        cursor: The cursor a listing returned.
        tag: The mark :func:`encode_cursor` was given.
        validate: Checks the id inside (``validate_task_id`` for task cursors).

    Raises:
        ValidationError: if the cursor was not made with this tag or does not hold
            an id that ``validate`` accepts.
    """
    invalid = ValidationError(
        "Invalid cursor: pass the next_cursor of a previous listing unchanged."
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid from None
    if not raw.startswith(tag):
        raise invalid
    try:
        return validate(raw[len(tag) :])
    except ValidationError:
        raise invalid from None


class ExtensionCache:
    """Remembers the file extension of recently seen images (a bounded LRU).

    A storage keys an image by ``<id>.<extension>``, and only the record knows the
    extension; remembering it for images saved, listed or read lately spares
    ``url_for`` and ``local_path`` a read of the record. Bounded, so memory does
    not grow with the number of stored images.

    Iterating yields the remembered ids, least recently remembered first.

    Args:
        maxsize: How many ids are remembered at most (the oldest go first).
    """

    def __init__(self, maxsize: int) -> None:
        #: How many ids are remembered at most; may be changed at any time.
        self.maxsize = maxsize
        self._extensions: OrderedDict[str, str] = OrderedDict()

    def remember(self, record: ImageRecord) -> None:
        """Remember ``record``'s extension, forgetting the oldest beyond ``maxsize``."""
        self._extensions[record.id] = record.extension
        self._extensions.move_to_end(record.id)
        while len(self._extensions) > self.maxsize:
            self._extensions.popitem(last=False)

    def get(self, image_id: str) -> str | None:
        """The remembered extension of ``image_id``, or ``None``."""
        return self._extensions.get(image_id)

    def forget(self, image_id: str) -> None:
        """Forget ``image_id`` (deleted); unknown ids are ignored."""
        self._extensions.pop(image_id, None)

    def __len__(self) -> int:
        return len(self._extensions)

    def __iter__(self) -> Iterator[str]:
        return iter(self._extensions)

"""Image ids: server-generated, time-sortable and validated wherever they enter.

An id looks like ``20261126T034442123-3f9a1c2b7d4e``: UTC date and time to the
millisecond, then 48 random bits. Sorting ids as strings sorts images by creation
time, which is what storages use for newest-first listing.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from mcp_imagegen.errors import InvalidImageIdError, ValidationError

IMAGE_ID_PATTERN = r"^[0-9]{8}T[0-9]{9}-[0-9a-f]{12}$"
_IMAGE_ID_RE = re.compile(IMAGE_ID_PATTERN)


def _stamp(now: datetime | None) -> str:
    """The time part of image and task ids: UTC to the millisecond."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}"


def _shown(value: object) -> str:
    """A refused id as an error shows it: a short prefix, never the whole input."""
    return repr(value)[:40] if isinstance(value, str) else type(value).__name__


def new_image_id(now: datetime | None = None) -> str:
    """Return a fresh image id for an image created at ``now`` (default: now)."""
    return f"{_stamp(now)}-{secrets.token_hex(6)}"


def validate_image_id(image_id: object) -> str:
    """Return ``image_id`` unchanged if it is a well-formed id.

    Raises:
        InvalidImageIdError: if it is not a string matching :data:`IMAGE_ID_PATTERN`.
            The message never echoes more than a short, printable prefix of the input.
    """
    if isinstance(image_id, str) and _IMAGE_ID_RE.fullmatch(image_id):
        return image_id
    raise InvalidImageIdError(
        f"Invalid image id {_shown(image_id)}: ids look like "
        "'20261126T034442123-3f9a1c2b7d4e' (use list_images to see the stored ones)."
    )


def image_id_time(image_id: str) -> datetime:
    """Return the creation time encoded in a valid image id."""
    stamp = validate_image_id(image_id)[:18]
    parsed = datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return parsed.replace(microsecond=int(stamp[15:18]) * 1000)


#: Task ids: the image-id time stamp, then 128 random bits (unguessable: a task id
#: is a capability to read its result when authentication is off).
TASK_ID_PATTERN = r"^[0-9]{8}T[0-9]{9}-[0-9a-f]{32}$"
_TASK_ID_RE = re.compile(TASK_ID_PATTERN)


def new_task_id(now: datetime | None = None) -> str:
    """Return a fresh, time-sortable, unguessable MCP task id."""
    return f"{_stamp(now)}-{secrets.token_hex(16)}"


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` unchanged if it is a well-formed task id.

    Raises:
        ValidationError: if it does not match :data:`TASK_ID_PATTERN`. The
            message never echoes more than a short prefix of the input.
    """
    if isinstance(task_id, str) and _TASK_ID_RE.fullmatch(task_id):
        return task_id
    raise ValidationError(
        f"Invalid task id {_shown(task_id)}: task ids look like "
        "'20261126T034442123-' followed by 32 hex digits."
    )

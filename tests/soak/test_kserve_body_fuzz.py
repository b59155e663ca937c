"""KServe body fuzz: random V1 and V2 answers fed to the response parsers.

Whatever the bytes, ``parse_v1_response`` / ``parse_v2_response`` return images or
raise ``BadBackendResponseError`` (the only error the backend turns into a clear
"the model answered something unusable" message); never another exception.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings

from mcp_imagegen import BadBackendResponseError
from mcp_imagegen_kserve.responses import (
    ParsedImage,
    parse_v1_response,
    parse_v2_response,
)
from tests.soak.conftest import FUZZ_EXAMPLES
from tests.soak.fuzzing import v1_bodies, v2_bodies

#: Small, so that a parser that trusts a shape cannot allocate much.
MAX_PIXELS = 512 * 512


def outcome(parse: Callable[[], list[ParsedImage]]) -> str | None:
    """Return what is wrong with one parse, or None."""
    try:
        images = parse()
    except BadBackendResponseError as exc:
        return None if str(exc).strip() else "BadBackendResponseError without message"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if not images or not all(isinstance(i, ParsedImage) for i in images):
        return f"returned {images!r:.200} instead of images or an error"
    return None


@settings(settings.get_profile("soak"), max_examples=FUZZ_EXAMPLES * 3)
@given(answer=v1_bodies())
def test_any_v1_body_gives_images_or_a_bad_response_error(
    answer: tuple[bytes, str | None],
) -> None:
    body, content_type = answer
    problem = outcome(
        lambda: parse_v1_response(
            body, content_type=content_type, where="fuzz", max_pixels=MAX_PIXELS
        )
    )
    assert problem is None, f"{body[:200]!r} ({content_type}) -> {problem}"


@settings(settings.get_profile("soak"), max_examples=FUZZ_EXAMPLES * 3)
@given(answer=v2_bodies())
def test_any_v2_body_gives_images_or_a_bad_response_error(
    answer: tuple[bytes, dict[str, str]],
) -> None:
    body, headers = answer
    problem = outcome(
        lambda: parse_v2_response(
            body, headers=headers, where="fuzz", max_pixels=MAX_PIXELS
        )
    )
    assert problem is None, f"{body[:200]!r} {headers} -> {problem}"

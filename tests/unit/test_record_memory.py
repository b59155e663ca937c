"""Reading records must not keep memory per image (issue: RSS tracked the store)."""

from __future__ import annotations

import gc
import tracemalloc

from mcp_imagegen import ImageRecord, new_image_id
from tests.conftest import make_record, png_bytes


def test_parsing_many_records_retains_no_memory_per_record() -> None:
    data = png_bytes()
    documents = [
        make_record(
            data, image_id=new_image_id(), prompt=f"a unique prompt number {n} " * 4
        ).model_dump_json()
        for n in range(3000)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for document in documents:
            ImageRecord.model_validate_json(document)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    # With pydantic-core's string cache, ~3000 unique prompts and ids stayed alive
    # (hundreds of KiB) after every record was dropped.
    assert retained < 64 * 1024

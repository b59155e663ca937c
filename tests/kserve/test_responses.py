"""The response parsers: every predictor variant, strict decoding, typed failures.

These cover the variants the test server cannot produce (data URIs, unpadded and
URL-safe base64, FP32 ranges, CHW, grayscale, ...); the real-server tests cover
the rest on the wire.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mcp_imagegen import BadBackendResponseError
from mcp_imagegen_kserve.responses import (
    BINARY_HEADER,
    decode_base64,
    parse_v1_response,
    parse_v2_response,
)

RED = (200, 30, 40)


def png(width: int = 16, height: int = 8, color: tuple[int, ...] = RED) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int = 16, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), RED).save(buffer, format="JPEG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def v1(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def pixel(data: bytes, xy: tuple[int, int] = (0, 0)) -> Any:
    with Image.open(io.BytesIO(data)) as image:
        return image.getpixel(xy)


def v2_binary(
    outputs: list[dict[str, Any]], tail: bytes
) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"model_name": "m", "outputs": outputs}).encode()
    return header + tail, {BINARY_HEADER: str(len(header))}


# -- base64 ------------------------------------------------------------------------


def test_decodes_standard_base64() -> None:
    assert decode_base64(b64(b"\xff\xfe image")) == b"\xff\xfe image"


def test_decodes_unpadded_base64() -> None:
    assert decode_base64(b64(b"ab").rstrip("=")) == b"ab"


def test_decodes_url_safe_base64() -> None:
    data = bytes(range(250, 256)) * 3

    text = base64.urlsafe_b64encode(data).decode().rstrip("=")

    assert "-" in text or "_" in text
    assert decode_base64(text) == data


def test_decodes_data_uri() -> None:
    assert decode_base64("data:image/png;base64," + b64(b"png!")) == b"png!"


def test_accepts_line_broken_mime_base64() -> None:
    text = base64.encodebytes(b"x" * 200).decode()

    assert "\n" in text
    assert decode_base64(text) == b"x" * 200


@pytest.mark.parametrize(
    "text",
    [
        "aGVsbG8*d29ybGQ=",  # a character outside the alphabet
        "aGVs bG8=!",
        "aGVsbG8=d29y",  # padding in the middle
        "abcde",  # impossible length
        "ab+c-d__",  # mixed alphabets
        "data:image/png,aGVsbG8=",  # a data URI that is not base64
        "héllo",
    ],
)
def test_rejects_invalid_base64_instead_of_dropping_characters(text: str) -> None:
    with pytest.raises(ValueError):
        decode_base64(text)


# -- V1 --------------------------------------------------------------------------------


def test_v1_reads_the_diffusers_predictor_contract() -> None:
    body = v1(
        {
            "predictions": [
                {"model_name": "sd", "image": {"format": "PNG", "b64": b64(png())}}
            ]
        }
    )

    [image] = parse_v1_response(body, content_type="application/json")

    assert (image.mime_type, image.width, image.height) == ("image/png", 16, 8)
    assert image.data == png()


@pytest.mark.parametrize(
    "prediction",
    [
        {"image_b64": b64(png())},
        {"b64_json": b64(png())},
        {"image": b64(png())},
        {"images": [b64(png())]},
        b64(png()),
        "data:image/png;base64," + b64(png()),
        base64.urlsafe_b64encode(png()).decode().rstrip("="),
    ],
    ids=[
        "image_b64",
        "b64_json",
        "image-string",
        "images-list",
        "bare",
        "data-uri",
        "urlsafe-unpadded",
    ],
)
def test_v1_reads_every_known_prediction_shape(prediction: Any) -> None:
    [image] = parse_v1_response(v1({"predictions": [prediction]}))

    assert image.data == png()


def test_v1_reads_a_raw_image_body_without_content_type() -> None:
    [image] = parse_v1_response(jpeg(), content_type=None)

    assert image.mime_type == "image/jpeg"


def test_v1_reads_a_body_that_is_base64_text() -> None:
    [image] = parse_v1_response(b64(png()).encode(), content_type="text/plain")

    assert image.data == png()


def test_v1_returns_every_image_in_order() -> None:
    first, second = png(color=(1, 2, 3)), png(color=(4, 5, 6))

    images = parse_v1_response(
        v1({"predictions": [{"image_b64": b64(first)}, {"image_b64": b64(second)}]})
    )

    assert [i.data for i in images] == [first, second]


def test_v1_answer_without_image_names_what_it_found() -> None:
    body = v1({"predictions": [{"model_name": "sd", "nsfw": True}]})

    with pytest.raises(BadBackendResponseError, match=r"no image.*model_name, nsfw"):
        parse_v1_response(body, where="KServe backend 'sd'")


def test_v1_answer_without_predictions_quotes_the_server_error() -> None:
    with pytest.raises(
        BadBackendResponseError, match=r"no 'predictions'.*out of memory"
    ):
        parse_v1_response(v1({"error": "out of memory"}))


def test_v1_rejects_base64_that_is_not_an_image() -> None:
    body = v1({"predictions": [{"image_b64": b64(b"hello, not a picture")}]})

    with pytest.raises(
        BadBackendResponseError,
        match=r"predictions\[0\].image_b64 is not a usable image",
    ):
        parse_v1_response(body)


def test_v1_rejects_a_truncated_image() -> None:
    body = v1({"predictions": [{"image_b64": b64(png(64, 64)[:-30])}]})

    with pytest.raises(BadBackendResponseError, match="not a usable image"):
        parse_v1_response(body)


def test_v1_rejects_an_image_over_the_pixel_cap_before_decoding_it() -> None:
    body = v1({"predictions": [b64(png(300, 300))]})

    with pytest.raises(BadBackendResponseError, match="more than the limit"):
        parse_v1_response(body, max_pixels=256 * 256)


def test_v1_says_so_when_the_predictor_returns_a_url() -> None:
    body = v1({"predictions": [{"image": "https://bucket.example.com/x.png"}]})

    with pytest.raises(BadBackendResponseError, match="is a URL"):
        parse_v1_response(body)


def test_v1_error_messages_start_with_where() -> None:
    with pytest.raises(BadBackendResponseError) as caught:
        parse_v1_response(b"<html>502</html>", content_type="text/html", where="HERE")

    assert str(caught.value).startswith("HERE: ")


# -- V2 BYTES --------------------------------------------------------------------------


def test_v2_reads_a_bytes_output_with_base64_json_data() -> None:
    body = json.dumps(
        {
            "outputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [b64(png())],
                }
            ]
        }
    ).encode()

    [image] = parse_v2_response(body)

    assert image.data == png()


def test_v2_reads_raw_bytes_from_the_binary_tail() -> None:
    element = jpeg()
    tail = struct.pack("<I", len(element)) + element
    body, headers = v2_binary(
        [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(tail)},
            }
        ],
        tail,
    )

    [image] = parse_v2_response(body, headers=headers)

    assert image.data == element
    assert image.mime_type == "image/jpeg"


def test_v2_reads_base64_text_from_the_binary_tail() -> None:
    element = b64(png()).encode()
    tail = struct.pack("<I", len(element)) + element
    body, headers = v2_binary(
        [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(tail)},
            }
        ],
        tail,
    )

    [image] = parse_v2_response(body, headers=headers)

    assert image.data == png()


def test_v2_finds_binary_data_after_other_binary_outputs() -> None:
    flag = b"\x01"
    element = png()
    image_tail = struct.pack("<I", len(element)) + element
    body, headers = v2_binary(
        [
            {
                "name": "nsfw",
                "datatype": "BOOL",
                "shape": [1],
                "parameters": {"binary_data_size": 1},
            },
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(image_tail)},
            },
        ],
        flag + image_tail,
    )

    [image] = parse_v2_response(body, headers=headers)

    assert image.data == element


def test_v2_picks_the_first_output_that_holds_an_image() -> None:
    body = json.dumps(
        {
            "outputs": [
                {
                    "name": "prompt",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": ["a cat"],
                },
                {"name": "nsfw", "datatype": "BOOL", "shape": [1], "data": [False]},
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [b64(png())],
                },
            ]
        }
    ).encode()

    [image] = parse_v2_response(body)

    assert image.data == png()


def test_v2_reads_the_configured_output_by_name() -> None:
    first, second = png(color=(1, 1, 1)), png(color=(9, 9, 9))
    body = json.dumps(
        {
            "outputs": [
                {
                    "name": "preview",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [b64(first)],
                },
                {
                    "name": "full",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [b64(second)],
                },
            ]
        }
    ).encode()

    [image] = parse_v2_response(body, output_name="full")

    assert image.data == second


def test_v2_names_the_outputs_when_the_configured_one_is_missing() -> None:
    body = json.dumps(
        {
            "outputs": [
                {
                    "name": "images",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [b64(png())],
                }
            ]
        }
    ).encode()

    with pytest.raises(
        BadBackendResponseError, match=r"no output 'image'.*'images'.*output_name"
    ):
        parse_v2_response(body, output_name="image")


def test_v2_explains_why_no_output_is_an_image() -> None:
    body = json.dumps(
        {
            "outputs": [
                {"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["a cat"]}
            ]
        }
    ).encode()

    with pytest.raises(
        BadBackendResponseError, match=r"no output holds an image.*'prompt' BYTES"
    ):
        parse_v2_response(body)


def test_v2_quotes_the_server_error_when_there_are_no_outputs() -> None:
    with pytest.raises(BadBackendResponseError, match=r"no 'outputs'.*boom"):
        parse_v2_response(b'{"error": "boom"}')


@pytest.mark.parametrize(
    ("size", "header"),
    [(100, "10"), (10, "0"), (10, "x")],
    ids=["tail-too-short", "zero-header", "bad-header"],
)
def test_v2_rejects_inconsistent_binary_framing(size: int, header: str) -> None:
    outputs = [
        {
            "name": "image",
            "datatype": "BYTES",
            "shape": [1],
            "parameters": {"binary_data_size": size},
        }
    ]
    body, headers = v2_binary(outputs, b"\x00" * 10)
    if header != "10":
        headers = {BINARY_HEADER: header}

    with pytest.raises(BadBackendResponseError):
        parse_v2_response(body, headers=headers)


# -- V2 tensors ------------------------------------------------------------------------


def tensor_output(
    array: np.ndarray, datatype: str, name: str = "generated_image"
) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": list(array.shape),
        "data": array.reshape(-1).tolist(),
    }


def v2_json(*outputs: dict[str, Any]) -> bytes:
    return json.dumps({"model_name": "m", "outputs": list(outputs)}).encode()


def gradient(height: int = 4, width: int = 6) -> np.ndarray:
    """HWC uint8 with distinct pixels: red = x * 40, green = y * 60, blue = 7."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(width)[np.newaxis, :] * 40
    pixels[..., 1] = np.arange(height)[:, np.newaxis] * 60
    pixels[..., 2] = 7
    return pixels


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_v2_converts_a_uint8_nhwc_tensor_to_png() -> None:
    pixels = gradient()

    [image] = parse_v2_response(v2_json(tensor_output(pixels[np.newaxis], "UINT8")))

    assert (image.mime_type, image.width, image.height) == ("image/png", 6, 4)
    assert np.array_equal(decoded(image.data), pixels)


def test_v2_converts_a_uint8_tensor_from_the_binary_tail() -> None:
    pixels = gradient()[np.newaxis]
    raw = pixels.tobytes()
    body, headers = v2_binary(
        [
            {
                "name": "generated_image",
                "datatype": "UINT8",
                "shape": list(pixels.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        raw,
    )

    [image] = parse_v2_response(body, headers=headers)

    assert np.array_equal(decoded(image.data), pixels[0])


@pytest.mark.parametrize(
    ("scale", "offset"),
    [(1.0, 0.0), (1 / 255, 0.0), (2 / 255, -1.0)],
    ids=["0-255", "0-1", "minus1-1"],
)
def test_v2_converts_fp32_tensors_in_every_value_range(
    scale: float, offset: float
) -> None:
    pixels = gradient()
    values = (pixels.astype(np.float64) * scale + offset).astype(np.float32)

    [image] = parse_v2_response(v2_json(tensor_output(values[np.newaxis], "FP32")))

    assert np.abs(decoded(image.data).astype(int) - pixels.astype(int)).max() <= 1


def test_v2_converts_a_chw_tensor() -> None:
    pixels = gradient()
    chw = (pixels.transpose(2, 0, 1) / 255.0).astype(np.float32)[np.newaxis]
    raw = chw.tobytes()
    body, headers = v2_binary(
        [
            {
                "name": "image",
                "datatype": "FP32",
                "shape": list(chw.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        raw,
    )

    [image] = parse_v2_response(body, headers=headers)

    assert (image.width, image.height) == (6, 4)
    assert np.abs(decoded(image.data).astype(int) - pixels.astype(int)).max() <= 1


def test_v2_converts_an_hwc_tensor_without_batch_axis() -> None:
    [image] = parse_v2_response(v2_json(tensor_output(gradient(), "UINT8")))

    assert np.array_equal(decoded(image.data), gradient())


def test_v2_converts_a_grayscale_tensor() -> None:
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10

    [image] = parse_v2_response(v2_json(tensor_output(gray, "UINT8")))

    with Image.open(io.BytesIO(image.data)) as opened:
        assert opened.mode == "L"
        assert np.array_equal(np.asarray(opened), gray)


def test_v2_returns_one_image_per_batch_entry() -> None:
    batch = np.stack([gradient(), 255 - gradient()])

    images = parse_v2_response(v2_json(tensor_output(batch, "UINT8")))

    assert len(images) == 2
    assert np.array_equal(decoded(images[1].data), 255 - gradient())


def test_v2_keeps_rgba_tensors_as_rgba() -> None:
    rgba = np.full((4, 6, 4), 128, dtype=np.uint8)

    [image] = parse_v2_response(v2_json(tensor_output(rgba, "UINT8")))

    with Image.open(io.BytesIO(image.data)) as opened:
        assert opened.mode == "RGBA"


@pytest.mark.parametrize(
    ("shape", "datatype", "data", "match"),
    [
        ([1, 4, 6, 3], "UINT8", [0] * 10, "needs 72"),
        ([7, 5], "FP32", [float("nan")] * 35, "NaN"),
        ([1, 5, 7, 9, 3], "UINT8", [0] * 945, "not an image shape"),
        ([10, 20], "FP32", ["a"] * 200, "could not be read"),
    ],
    ids=["too-few-values", "nan", "five-dims", "strings"],
)
def test_v2_rejects_broken_tensors(
    shape: list[int], datatype: str, data: list[Any], match: str
) -> None:
    body = json.dumps(
        {
            "outputs": [
                {"name": "x", "datatype": datatype, "shape": shape, "data": data}
            ]
        },
        allow_nan=True,
    ).encode()

    with pytest.raises(BadBackendResponseError, match=match):
        parse_v2_response(body, output_name="x")


def test_v2_rejects_a_tensor_over_the_pixel_cap_before_reading_it() -> None:
    body = json.dumps(
        {
            "outputs": [
                {
                    "name": "x",
                    "datatype": "UINT8",
                    "shape": [1, 100000, 100000, 3],
                    "data": [],
                }
            ]
        }
    ).encode()

    with pytest.raises(BadBackendResponseError, match="more than the limit"):
        parse_v2_response(body)


# -- anything at all -----------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
OUTPUT = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["image", "generated_image", "x"])
        | st.text(max_size=4),
        "datatype": st.sampled_from(["BYTES", "UINT8", "FP32", "INT64", "BOOL"]) | JSON,
        "shape": st.lists(st.integers(min_value=-1, max_value=8), max_size=5) | JSON,
        "data": st.lists(
            st.integers(-300, 300) | st.floats(-2, 300) | st.text(max_size=12),
            max_size=40,
        )
        | JSON,
    },
    optional={
        "parameters": st.fixed_dictionaries(
            {"binary_data_size": st.integers(-2, 64) | JSON}
        )
        | JSON
    },
)
V1_DOCS = JSON | st.fixed_dictionaries({"predictions": JSON})
V2_DOCS = JSON | st.fixed_dictionaries({"outputs": st.lists(OUTPUT, max_size=3) | JSON})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=V1_DOCS, content_type=st.sampled_from([None, "application/json", "text/plain"])
)
def test_any_json_v1_answer_yields_images_or_a_bad_response_error(
    doc: Any, content_type: str | None
) -> None:
    body = json.dumps(doc).encode()

    try:
        images = parse_v1_response(body, content_type=content_type)
    except BadBackendResponseError:
        return
    assert images and all(i.width > 0 and i.height > 0 for i in images)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=V2_DOCS,
    tail=st.binary(max_size=64),
    binary=st.booleans(),
    output_name=st.none() | st.just("image"),
)
def test_any_json_v2_answer_yields_images_or_a_bad_response_error(
    doc: Any, tail: bytes, binary: bool, output_name: str | None
) -> None:
    header = json.dumps(doc).encode()
    body, headers = (
        (header + tail, {BINARY_HEADER: str(len(header))}) if binary else (header, {})
    )

    try:
        images = parse_v2_response(body, headers=headers, output_name=output_name)
    except BadBackendResponseError:
        return
    assert images and all(i.width > 0 and i.height > 0 for i in images)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), header=st.none() | st.text(max_size=6))
def test_any_bytes_yield_images_or_a_bad_response_error(
    body: bytes, header: str | None
) -> None:
    headers = {} if header is None else {BINARY_HEADER: header}
    for parse in (
        lambda: parse_v1_response(body),
        lambda: parse_v2_response(body, headers=headers),
    ):
        try:
            parse()
        except BadBackendResponseError:
            pass

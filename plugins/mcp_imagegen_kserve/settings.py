"""Settings of a ``kserve`` backend instance: one ``[backends.<name>]`` table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from mcp_imagegen import ComponentSettings, redact_url_text

Scalar = str | int | float | bool

#: Wire names of the generation fields, as the common diffusers predictor reads them.
DEFAULT_FIELD_NAMES: dict[str, str] = {
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    # Image input (image-to-image, inpainting), as diffusers' pipelines name them.
    "image": "image",
    "mask": "mask_image",
    "strength": "strength",
}


class KServeSettings(ComponentSettings):
    """``[backends.<name>]`` with ``type = "kserve"``.

    Durations are in seconds. Defaults work unchanged against the common diffusers
    predictor contract (V1, ``instances[0]`` holds the generation kwargs) and a
    KServe-style V2 predictor returning a BYTES ``image`` output.
    """

    # -- where ------------------------------------------------------------------
    #: Base URL of the InferenceService; may carry a path prefix
    #: (``https://gw.example.com/serving/team/sdxl``). No trailing ``/v1``/``/v2``.
    url: str
    #: Model name in the request path (may differ from the InferenceService name).
    model: str = Field(min_length=1)
    #: ``v1`` (``:predict``, ``instances``) or ``v2`` (Open Inference Protocol).
    protocol: Literal["v1", "v2"] = "v1"
    #: ``Host`` header to send, for Knative/Istio ingress reached by IP.
    host_header: str | None = None
    #: Bearer token (``Authorization: Bearer ...``); set it through the environment
    #: (``MCP_IMAGEGEN_BACKENDS__<NAME>__TOKEN``), never in the file.
    token: SecretStr | None = None

    # -- time -------------------------------------------------------------------
    #: Seconds to open a connection (also the whole budget of a health check).
    connect_timeout: float = Field(10.0, gt=0)
    #: Seconds to wait for the answer of one request (generation is slow).
    timeout: float = Field(300.0, gt=0)
    #: Seconds one image may take in total: every attempt and every wait between.
    deadline: float = Field(600.0, gt=0)
    #: Retries of a transient failure (connection error, 502, 503, 504); 4xx never.
    max_retries: int = Field(6, ge=0, le=100)
    #: First wait before a retry, in seconds; doubles per attempt, with jitter.
    retry_backoff: float = Field(1.0, ge=0)
    #: Longest wait between two attempts, in seconds.
    retry_backoff_max: float = Field(30.0, ge=0)
    #: Seconds between heartbeat progress reports while waiting on the model.
    heartbeat_interval: float = Field(2.0, gt=0)

    # -- TLS and connections ----------------------------------------------------
    #: Verify the server's TLS certificate (keep on outside a lab).
    verify_tls: bool = True
    #: PEM file with the CA certificates to trust instead of the system's.
    ca_bundle: Path | None = None
    #: Requests in flight to this endpoint at once (the rest wait).
    max_concurrency: int = Field(2, ge=1, le=256)

    # -- V1 ---------------------------------------------------------------------
    #: V1: send the N images of a request as N ``instances`` in one request
    #: (only for predictors that read every instance).
    batch_instances: bool = False

    # -- V2 ---------------------------------------------------------------------
    #: V2: ask for outputs in the binary tensor extension (smaller, faster).
    binary_data: bool = False
    #: V2: shape of the prompt input: ``[1]``, or ``[1, 1]`` for Triton models with
    #: ``max_batch_size`` 1. Extra inputs (see ``parameters_in``) use it too.
    prompt_shape: list[int] = Field(default_factory=lambda: [1])
    #: V2: name of the output holding the image; unset picks the first output
    #: that decodes as an image.
    output_name: str | None = None
    #: V2: send generation fields as request ``parameters`` or as extra ``inputs``
    #: (BYTES/INT32/INT64/FP32 tensors shaped like the prompt).
    parameters_in: Literal["parameters", "inputs"] = "parameters"

    # -- request fields ---------------------------------------------------------
    #: Name of the prompt: the V1 instance key, or the V2 BYTES input.
    prompt_input: str = Field("prompt", min_length=1)
    #: Wire names of the generation fields (``steps`` is sent as
    #: ``num_inference_steps`` by default). Map a field to ``""`` to never send it.
    field_names: dict[str, str] = Field(default_factory=dict)
    #: Fixed extra fields sent with every request (V1: in the instance; V2: in
    #: ``parameters``), e.g. ``{ scheduler = "euler" }``.
    extra_parameters: dict[str, Scalar] = Field(default_factory=dict)

    # -- what the model can do (requests are validated against it) ---------------
    max_images: int = Field(4, ge=1, le=64)
    min_side: int = Field(64, ge=1)
    max_side: int = Field(2048, ge=1)
    side_multiple: int = Field(8, ge=1)
    max_pixels: int = Field(2048 * 2048, ge=1)
    supports_negative_prompt: bool = True
    supports_seed: bool = True
    supports_steps: bool = True
    supports_guidance_scale: bool = True
    #: Steps sent when a request gives none (unset: the predictor's own default).
    default_steps: int | None = Field(None, ge=1)
    #: The model takes an input image (image-to-image); off by default, as nothing
    #: tells which predictors read one. Sent with ``strength`` (see docs/kserve.md).
    image_input: bool = False
    #: The model takes an inpainting mask too (white = repaint); needs image_input.
    mask: bool = False

    # -- safety -----------------------------------------------------------------
    #: Largest response body accepted, in bytes.
    max_response_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    #: Largest decoded image accepted, in pixels (decompression-bomb guard).
    max_image_pixels: int = Field(8192 * 8192, ge=64)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        # Before parsing: a password holding '/', '@' or a space parses as a
        # host or port, and the parser's message would echo it.
        if redact_url_text(value) != value:
            raise ValueError(
                "must not carry credentials (user:password@ or a secret query "
                "value); set the token setting through the environment instead"
            )
        import httpx  # here: only a configured kserve backend needs it

        try:
            url = httpx.URL(value.strip())
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a valid URL ({redact_url_text(str(exc))})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        if url.query or url.fragment:
            raise ValueError("must not carry a query string or fragment")
        if url.username or url.password:
            raise ValueError(
                "must not carry credentials; set the token setting through the "
                "environment instead"
            )
        return str(url).rstrip("/")

    @field_validator("prompt_shape")
    @classmethod
    def _check_prompt_shape(cls, value: list[int]) -> list[int]:
        if not value or any(dim < 1 for dim in value) or math.prod(value) != 1:
            raise ValueError("must hold one prompt: [1], [1, 1], ...")
        return value

    @field_validator("field_names")
    @classmethod
    def _check_field_names(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_FIELD_NAMES))
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(DEFAULT_FIELD_NAMES)}"
            )
        return value

    @model_validator(mode="after")
    def _check_sides(self) -> KServeSettings:
        if self.min_side > self.max_side:
            raise ValueError("min_side must not be larger than max_side")
        if self.mask and not self.image_input:
            raise ValueError(
                "mask = true needs image_input = true (a mask edits an input image)"
            )
        names = self.wire_names()
        for field, enabled in (("image", self.image_input), ("mask", self.mask)):
            if enabled and not names[field]:
                raise ValueError(
                    f'field_names.{field} = "" but {field} input is enabled; give '
                    f"the wire name the predictor reads (default "
                    f"'{DEFAULT_FIELD_NAMES[field]}')"
                )
        return self

    def wire_names(self) -> dict[str, str]:
        """Return the wire name of every generation field ("" = not sent)."""
        return {**DEFAULT_FIELD_NAMES, **self.field_names}

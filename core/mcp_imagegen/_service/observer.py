"""The observer seam: what the service reports for metrics, without knowing them.

The service calls a :class:`ServiceObserver` at the few points worth counting;
the composition root passes an implementation (``_http.metrics`` for Prometheus
over HTTP) or leaves the no-op default. Keeping the protocol here keeps metric
libraries out of the service.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import anyio

#: The outcome of a backend request that succeeded.
OUTCOME_OK = "ok"
#: The outcome of a backend request cancelled (client gone, drain, timeout).
OUTCOME_CANCELLED = "cancelled"


@runtime_checkable
class ServiceObserver(Protocol):
    """Told about backend requests, stored images and busy rejections.

    Calls are synchronous and must be cheap and must not raise: they run on the
    event loop in the middle of a request.
    """

    def backend_request(self, backend: str, outcome: str, seconds: float) -> None:
        """One backend request ended.

        Args:
            backend: The backend's configured instance name.
            outcome: ``"ok"``, ``"cancelled"`` or the error's class name (e.g.
                ``"BackendUnavailableError"``).
            seconds: How long the backend took, slot wait excluded.
        """

    def image_stored(self, backend: str) -> None:
        """One image was stored (generated or transformed).

        Args:
            backend: The instance name of the backend that made the image.
        """

    def busy_rejected(self) -> None:
        """A generation was refused because every slot and the queue were full."""


class NullObserver:
    """The default observer: ignores everything."""

    def backend_request(self, backend: str, outcome: str, seconds: float) -> None:
        """Ignore a backend request."""

    def image_stored(self, backend: str) -> None:
        """Ignore a stored image."""

    def busy_rejected(self) -> None:
        """Ignore a busy rejection."""


NULL_OBSERVER: ServiceObserver = NullObserver()


def outcome_of(error: BaseException) -> str:
    """The outcome label of a backend request that raised ``error``."""
    if isinstance(error, anyio.get_cancelled_exc_class()):
        return OUTCOME_CANCELLED
    return type(error).__name__

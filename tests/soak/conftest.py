"""Fixtures of the soak, fault and fuzz tests, and their hypothesis profile.

The hypothesis profile keeps every fuzz test small and repeatable: a fixed number
of examples, derandomized, no per-example deadline (2 shared cores make timing
meaningless), and no example database (runs do not depend on earlier runs).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "soak",
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Examples per fuzz test; small on purpose (bench/soak.py --scenario fuzz runs more).
FUZZ_EXAMPLES = 60


# The in-memory client factory of tests/integration, and the real KServe test
# server of tests/kserve, started once per session when a soak test needs it
# (imported, not copied, so both directories run the same fixtures).
from tests.integration.conftest import connect  # noqa: E402, F401
from tests.kserve.conftest import kserve_server  # noqa: E402, F401

"""Settings of the reliability suite: Hypothesis runs a bounded, reproducible number of examples in CI.

``DETKIT_FUZZ_EXAMPLES`` raises the examples of every property (default 25)
and makes the runs random rather than derandomized; see docs/guides/reliability.rst.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_EXAMPLES = os.environ.get("DETKIT_FUZZ_EXAMPLES")
settings.register_profile(
    "detkit-reliability",
    max_examples=int(_EXAMPLES or 25),
    derandomize=_EXAMPLES is None,  # the same examples on every CI run; a long run explores
    deadline=None,  # a shared CI machine: time limits would flake
    database=None,  # no .hypothesis/ folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("detkit-reliability")

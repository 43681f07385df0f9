"""The hypothesis settings of the fuzz tests (tests/test_fuzz_*.py).

In the suite they are deterministic (derandomized, no example database) and bounded, so
the three files take well under a minute on two cores. To hunt for new failures, set
NUTSHELL_FUZZ_EXAMPLES (e.g. 5000): that many random examples per test, a new draw each run.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_HUNT = os.environ.get("NUTSHELL_FUZZ_EXAMPLES", "")


def fuzz_settings(examples: int) -> settings:
    """`examples` fixed examples per test in the suite, or the hunt's number at random."""
    return settings(max_examples=int(_HUNT) if _HUNT else examples, deadline=None,
                    derandomize=not _HUNT, database=None, print_blob=bool(_HUNT),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

"""The arguments START and STOP send to every task (reference §1.1.2).

START sends `runNumber` and `cleanup` (completed STARTs, `__fmq_cleanup_count`), and
STOP nothing of its own; both add each of their keys that the root's variable stack
holds, twice: as written (snake_case) and in lowerCamelCase. GO_ERROR's STOP sends the
snake_case keys only.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

FILL_KEYS = ("fill_info_fill_number", "fill_info_filling_scheme", "fill_info_beam_type",
             "fill_info_stable_beams_start_ms", "fill_info_stable_beams_end_ms")
START_KEYS = (*FILL_KEYS, "run_number", "run_type", "run_start_time_ms", "run_end_time_ms",
              "lhc_period", "pdp_beam_type", "pdp_override_run_start_time",
              "original_run_number")
STOP_KEYS = (*FILL_KEYS, "run_end_time_ms")


def lower_camel(key: str) -> str:
    """`run_start_time_ms` → `runStartTimeMs`."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _present(stack: Mapping[str, str], keys: Iterable[str], camel: bool) -> dict[str, str]:
    arguments: dict[str, str] = {}
    for key in keys:
        if key in stack:
            arguments[key] = stack[key]
            if camel:
                arguments[lower_camel(key)] = stack[key]
    return arguments


def start_arguments(stack: Mapping[str, str], run_number: int, cleanup: int) -> dict[str, str]:
    """START's arguments, from the root's stack (where run_number is already set)."""
    return {"runNumber": str(run_number), "cleanup": str(cleanup),
            **_present(stack, START_KEYS, camel=True), "run_number": str(run_number)}


def stop_arguments(stack: Mapping[str, str], *, camel: bool = True) -> dict[str, str]:
    """STOP's arguments; `camel=False` for GO_ERROR's STOP (snake_case only)."""
    return _present(stack, STOP_KEYS, camel)

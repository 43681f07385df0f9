"""The role tree of `template render` as indented text, one role per line."""
from __future__ import annotations

from typing import Any, Iterator


def _describe(role: dict[str, Any]) -> str:
    parts = [f"{role['name']} [{role['kind']}]"]
    if role.get("class"):
        parts.append(f"class={role['class']}")
    if role.get("func"):
        parts.append(f"func={role['func']}")
    if role.get("trigger"):
        parts.append(f"trigger={role['trigger']}")
    hosts = [c["value"] for c in role.get("constraints", ()) if c.get("attribute") == "machine_id"]
    if hosts:
        parts.append(f"host={','.join(hosts)}")
    others = [f"{c['attribute']}={c['value']}" for c in role.get("constraints", ())
              if c.get("attribute") != "machine_id"]
    if others:
        parts.append(f"constraints={','.join(others)}")
    return "  ".join(parts)


def tree_lines(role: dict[str, Any], depth: int = 0) -> Iterator[str]:
    yield "  " * depth + _describe(role)
    for child in role.get("roles", ()):
        yield from tree_lines(child, depth + 1)

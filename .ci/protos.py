#!/usr/bin/env python3
"""Generate the Python stubs of every .proto in the repository, or check them.

Each .proto lives in the package that owns it; its stubs are written beside it
and committed, so an installed nutshell never needs protoc. The set-up script
runs this, and a test runs it with --check so stale stubs fail the suite.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("console", "engine", "executor", "occlib", "peanut")
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    found: list[Path] = []
    for package in PACKAGES:
        found.extend(sorted((ROOT / package).rglob("*.proto")))
    return found


def generate(out: Path) -> list[Path]:
    """Run protoc for every .proto into `out`; return the generated paths, relative."""
    from grpc_tools import protoc  # imported late: only set-up and tests need it
    import grpc_tools

    protos = proto_files()
    include = Path(grpc_tools.__file__).parent / "_proto"
    relative = [str(p.relative_to(ROOT)) for p in protos]
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *relative,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed for {', '.join(relative)}")
    return [
        p.with_name(p.stem + suffix).relative_to(ROOT)
        for p in protos
        for suffix in SUFFIXES
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed stubs differ from freshly generated ones")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generated = generate(out)
        stale = [g for g in generated
                 if not (ROOT / g).exists() or not filecmp.cmp(out / g, ROOT / g, shallow=False)]
        if options.check:
            for g in stale:
                print(f"stale or missing stub: {g} (run: python .ci/protos.py)", file=sys.stderr)
            return 1 if stale else 0
        for g in stale:
            shutil.copyfile(out / g, ROOT / g)
            print(f"wrote {g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

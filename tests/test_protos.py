"""The committed gRPC stubs must be what the .proto files generate."""
import subprocess
import sys

from tests.conftest import ROOT


def test_committed_stubs_are_fresh() -> None:
    check = subprocess.run([sys.executable, str(ROOT / ".ci" / "protos.py"), "--check"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr

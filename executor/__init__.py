"""The executor: starts task processes on a node and drives them over OCC.

The launcher forks with a preexec hook (for PR_SET_PDEATHSIG) while gRPC
threads run; gRPC's fork handlers cannot help there and only print a warning
per launch, so they are turned off before grpc is first imported.
"""
import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

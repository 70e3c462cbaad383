"""The checked-in gRPC stubs are exactly what grpcio-tools generates from proto/ today."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_stubs_match_a_fresh_generation() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "genproto.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stubs match proto/" in result.stdout


def test_installed_stubs_are_the_checked_in_ones() -> None:
    """The package the server imports is the repo's planner_api (not a stale build)."""
    from planner_api.v1 import planner_pb2

    assert planner_pb2.DESCRIPTOR.name == "planner/v1/planner.proto"
    assert planner_pb2.__file__ is not None
    assert str(REPO / "planner_api") in planner_pb2.__file__

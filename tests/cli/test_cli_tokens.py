"""Where the CLI finds its token and TLS files (issue 11, item 3): a token file that is missing,
empty or not one line, or a TLS file that cannot be read, is a usage error (exit 2, one message,
no traceback) before any call; the server is never reached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLANNER = Path(sys.executable).parent / "planner"
# Nothing listens there; none of these commands gets as far as connecting.
NOWHERE = "127.0.0.1:9"


def planner(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    return subprocess.run(
        [str(PLANNER), "--target", NOWHERE, "--timeout", "2", *args],
        env={**outside, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read the token file"),
        ("\n  \n", "is empty"),
        ("one\ntwo\n", "more than one line"),
    ],
)
def test_a_bad_token_file_is_a_usage_error(content: str | None, says: str, tmp_path: Path) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    for done in (
        planner("--token-file", str(path), "families", "list"),
        planner("families", "list", PLANNER_TOKEN_FILE=str(path)),
    ):
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"planner: error: {says_line(done.stderr)}\n"
        assert says in done.stderr and str(path) in done.stderr


def says_line(stderr: str) -> str:
    (line,) = stderr.splitlines()  # one line: no traceback
    return line.removeprefix("planner: error: ")


def test_token_and_token_file_exclude_each_other(tmp_path: Path) -> None:
    done = planner("--token", "t", "--token-file", str(tmp_path / "t"), "families", "list")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


def test_an_unreadable_tls_file_is_a_usage_error(tmp_path: Path) -> None:
    done = planner("--ca-file", str(tmp_path / "missing.pem"), "--json", "families", "list")
    assert done.returncode == 2
    assert "cannot read the CA file" in says_line(done.stderr)
    assert '"code": "USAGE"' in done.stdout
    half = planner("--tls", "--cert-file", str(tmp_path / "c.pem"), "families", "list")
    assert half.returncode == 2 and "both its certificate and key" in says_line(half.stderr)

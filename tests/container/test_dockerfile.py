"""The Dockerfile: hadolint-clean, structurally what the service needs, and its build stage
replayed without Docker into a venv whose `planner-server` turns healthy and stops on SIGTERM."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.container.dockerfile_steps import (
    DockerIgnore,
    Instruction,
    Stage,
    command_form,
    context_files,
    healthcheck_command,
    image_paths,
    is_exec_form,
    parse_dockerfile,
    replay_stage,
    runtime_environment,
    split_flags,
    user_and_group,
)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"

START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def build(stages: list[Stage], final: Stage) -> Stage:
    """The stage the final one copies its venv from."""
    sources = {split_flags(step.args)[0].get("from") for step in final.all("COPY")}
    named = [stage for stage in stages[:-1] if stage.name in sources]
    assert len(named) == 1, f"the final stage should copy from one build stage, not {sources}"
    return named[0]


def only(stage: Stage, keyword: str) -> Instruction:
    found = stage.all(keyword)
    assert len(found) == 1, f"stage {stage.name or stage.index} has {len(found)} {keyword}"
    return found[0]


def venv_path(stage: Stage) -> str:
    runs = " ".join(step.args for step in stage.all("RUN"))
    venvs = re.findall(r"-m\s+venv\s+(?:--\S+\s+)*(/[^\s;&|]+)", runs)
    assert len(venvs) == 1, f"the build stage should create one venv, found {venvs}"
    return str(venvs[0])


def created_users(stage: Stage) -> dict[str, str | None]:
    """login name -> --uid of every `useradd` in the stage's RUNs."""
    users: dict[str, str | None] = {}
    for step in stage.all("RUN"):
        words = shlex.split(step.args)
        for start in (i for i, word in enumerate(words) if word == "useradd"):
            options: list[str] = []
            for word in words[start + 1 :]:
                if word in ("&&", "||", ";") or word.endswith(";"):
                    break
                options.append(word)
            uid = None
            for flag in ("--uid", "-u"):
                if flag in options:
                    uid = options[options.index(flag) + 1]
            uid = uid or next((o.split("=", 1)[1] for o in options if o.startswith("--uid=")), None)
            users[options[-1]] = uid
    return users


def user_identities(stage: Stage) -> set[str]:
    """The name and id the final stage's USER runs as, as far as the Dockerfile says."""
    user, _ = user_and_group(only(stage, "USER"))
    names = {user}
    for name, uid in created_users(stage).items():
        if user in (name, uid):
            names.update({name} | ({uid} if uid else set()))
    return names


# --- lint ---------------------------------------------------------------------------------------


def test_hadolint_reports_nothing() -> None:
    assert HADOLINT.is_file(), f"hadolint not found at {HADOLINT} (requirements/dev.txt)"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, findings
    assert findings == ""


def test_hadolint_is_not_silent_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install grpcio\n")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
    assert "DL3013" in result.stdout  # unpinned pip install


# --- structure ----------------------------------------------------------------------------------


def test_multi_stage_on_a_pinned_slim_python_3_11(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        reference, _, _digest = stage.base.partition("@")
        image, _, tag = reference.partition(":")
        assert image in ("python", "docker.io/library/python"), stage.base
        assert re.fullmatch(r"3\.11(\.\d+)?-slim-[a-z]+", tag), f"pin a slim 3.11 tag: {stage.base}"
    assert len({stage.base for stage in stages}) == 1, "build and run on the same Python"


def test_final_stage_runs_as_a_created_non_root_user(final: Stage) -> None:
    user, group = user_and_group(only(final, "USER"))
    assert user not in ("", "0", "root")
    assert group not in ("0", "root")
    users = created_users(final)
    assert user in users or user in users.values(), f"USER {user} is not created: {users}"
    assert all(uid not in ("0", None) for uid in users.values()), "give users an explicit uid"


def test_data_directory_belongs_to_the_user(final: Stage) -> None:
    url = final.env()["PLANNER_DATABASE_URL"]
    assert url.startswith("sqlite:////"), f"an absolute SQLite path: {url}"
    data_dir = str(Path(url.removeprefix("sqlite:///")).parent)
    owners: set[str] = set()
    for step in final.all("RUN"):
        for command in re.split(r"&&|;|\|\|", step.args):
            words = shlex.split(command)
            if not words or data_dir not in words:
                continue
            if words[0] == "install" and "-o" in words:
                owners.add(words[words.index("-o") + 1])
            elif words[0] == "chown":
                owners.add(words[[w.startswith("-") for w in words[1:]].index(False) + 1])
    owners = {owner.split(":")[0] for owner in owners}
    assert owners, f"no RUN gives {data_dir} an owner"
    assert owners <= user_identities(final), f"{data_dir} owned by {owners}, not the USER"


def test_listens_on_the_exposed_port(final: Stage) -> None:
    exposed = {port.split("/")[0] for step in final.all("EXPOSE") for port in step.args.split()}
    assert exposed == {"50051"}
    listen = final.env()["PLANNER_LISTEN"]
    assert listen == "[::]:50051"


def test_entrypoint_and_healthcheck_use_the_console_script(final: Stage) -> None:
    entrypoint = only(final, "ENTRYPOINT")
    assert is_exec_form(entrypoint.args), "exec form, so planner-server is PID 1 and gets SIGTERM"
    assert entrypoint.command() == ["planner-server"]
    healthcheck = only(final, "HEALTHCHECK")
    assert healthcheck_command(healthcheck) == ["planner-server", "--health-check"]
    flags, _ = healthcheck.flags()
    assert set(flags) <= {"interval", "timeout", "start-period", "start-interval", "retries"}
    assert "start-period" in flags, "startup warms the solver processes; give it a grace period"
    stop = final.last("STOPSIGNAL")
    assert stop is None or stop.args in ("SIGTERM", "15", "TERM")


def test_installs_the_runtime_requirements_the_makefile_installs(build: Stage) -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^\$\(VENV\)/\.runtime:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None, "Makefile has no $(VENV)/.runtime recipe"
    make_requirements = re.findall(r"-r\s+(\S+)", recipe.group(1))
    assert make_requirements == ["requirements/runtime.txt"]

    pip_runs = [shlex.split(s.args) for s in build.all("RUN") if re.search(r"\bpip\b", s.args)]
    installed = [words[words.index("-r") + 1] for words in pip_runs if "-r" in words]
    assert installed == make_requirements
    for words in pip_runs:
        assert "--no-cache-dir" in words
    project = [words for words in pip_runs if words[-1] == "."]
    assert len(project) == 1 and "--no-deps" in project[0], "the project itself, --no-deps"
    copied = " ".join(step.args for step in build.all("COPY"))
    assert "requirements/runtime.txt" in copied


def test_copies_what_the_package_needs_and_dockerignore_lets_it_through(build: Stage) -> None:
    ignore = DockerIgnore.load(REPO)
    sources: list[str] = []
    for step in build.all("COPY"):
        _, rest = step.flags()
        sources.extend(shlex.split(rest)[:-1])
    named = {source.rstrip("/") for source in sources}
    needed = {"pyproject.toml", "README.md", "planner", "planner_api", "server", "clients", "proto"}
    assert needed <= named, f"missing from COPY: {sorted(needed - named)}"
    for source in sources:
        files = context_files(REPO, source, ignore)
        assert files, f".dockerignore excludes all of {source}"
        assert not any("__pycache__" in file.parts for file in files)
    migrations = REPO / "server" / "store" / "migrations"
    if migrations.is_dir():
        assert not ignore.excluded("server/store/migrations/env.py")


def test_final_stage_copies_the_venv_to_the_same_path(build: Stage, final: Stage) -> None:
    venv = venv_path(build)
    copies = [split_flags(s.args) for s in final.all("COPY")]
    venv_copies = [shlex.split(rest) for flags, rest in copies if flags.get("from") == build.name]
    # A venv is not relocatable: its scripts name its interpreter by absolute path.
    assert venv_copies == [[venv, venv]]
    assert final.env()["PATH"].startswith(f"{venv}/bin:")
    assert build.env()["PATH"].startswith(f"{venv}/bin:")


# --- the parser the replay relies on ------------------------------------------------------------


def test_parser_reads_continuations_forms_and_flags() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11-slim-bookworm AS build\n"
        "ENV A=1 \\\n"
        "    # a comment inside a continuation\n"
        '    B="two words"\n'
        "ENV A=2 C=${A}x\n"
        "ENV LEGACY value with spaces\n"
        "RUN echo one \\\n"
        "    && echo two\n"
        "FROM python:3.11-slim-bookworm\n"
        "COPY --from=build --chown=1:1 /opt/venv /opt/venv\n"
        'HEALTHCHECK --interval=5s CMD ["x", "--y"]\n'
        "ENTRYPOINT run it\n"
    )
    first, second = parse_dockerfile(text)
    assert (first.name, second.name) == ("build", None)
    # Within one ENV, values expand against the environment before it (Docker's rule).
    assert first.env() == {"A": "2", "B": "two words", "C": "1x", "LEGACY": "value with spaces"}
    assert command_form(only(first, "RUN").args) == ["/bin/sh", "-c", "echo one     && echo two"]
    flags, rest = only(second, "COPY").flags()
    assert flags == {"from": "build", "chown": "1:1"}
    assert rest == "/opt/venv /opt/venv"
    assert healthcheck_command(only(second, "HEALTHCHECK")) == ["x", "--y"]
    assert only(second, "ENTRYPOINT").command() == ["/bin/sh", "-c", "run it"]


def test_dockerignore_last_match_wins_and_parents_count() -> None:
    ignore = DockerIgnore(["*", "!src/", "**/__pycache__", "!src/keep/__pycache__", "*.md"])
    assert ignore.excluded("Makefile")
    assert not ignore.excluded("src/a.py")
    assert ignore.excluded("src/__pycache__/a.pyc")
    assert not ignore.excluded("src/keep/__pycache__/a.pyc")
    assert ignore.excluded("README.md")
    assert not ignore.excluded("src/README.md")  # '*' matches one path component only


# --- the replay ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_replayed_build_serves_healthy_and_stops_on_sigterm(
    stages: list[Stage], build: Stage, final: Stage, tmp_path: Path
) -> None:
    if sys.version_info[:2] != (3, 11):
        pytest.fail(f"the image runs Python 3.11; this is {sys.version.split()[0]}")
    root = tmp_path / "root"
    started = time.monotonic()
    replay = replay_stage(build, REPO, root)
    built = time.monotonic() - started

    venv = replay.host(venv_path(build))
    assert (venv / "bin" / "planner-server").is_file(), "\n".join(replay.log[-4:])

    prefixes = sorted(set(image_paths(build)) | set(image_paths(final)))
    env, workdir = runtime_environment(final, root, prefixes)
    port = free_port()
    database = tmp_path / "data" / "planner.db"
    database.parent.mkdir()
    env.update(
        PLANNER_LISTEN=f"127.0.0.1:{port}",
        PLANNER_DATABASE_URL=f"sqlite:///{database}",
    )
    entrypoint = only(final, "ENTRYPOINT").command()
    healthcheck = healthcheck_command(only(final, "HEALTHCHECK"))
    assert healthcheck is not None
    for command in (entrypoint, healthcheck):
        resolved = shutil.which(command[0], path=env["PATH"])
        assert resolved is not None and Path(resolved).parent == venv / "bin", resolved

    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(entrypoint, cwd=workdir, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        check: subprocess.CompletedProcess[str] | None = None
        while time.monotonic() < deadline:
            assert server.poll() is None, f"server exited early:\n{log_path.read_text()}"
            check = subprocess.run(
                healthcheck, cwd=workdir, env=env, capture_output=True, text=True, timeout=30
            )
            if check.returncode == 0:
                break
            time.sleep(0.5)
        assert check is not None and check.returncode == 0, (
            f"not healthy after {START_TIMEOUT} s: {check.stderr if check else ''}\n"
            f"{log_path.read_text()}"
        )
        healthy = time.monotonic() - started - built
        assert database.is_file(), "the server did not create its database"

        server.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        try:
            code = server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit {STOP_TIMEOUT} s after SIGTERM:\n{log_path.read_text()}")
        stopped = time.monotonic() - stop_started
        # As PID 1 in a container a signal without a handler is ignored: exiting 0 shows the
        # server handles SIGTERM itself rather than dying by the default action.
        assert code == 0, f"exit {code} on SIGTERM:\n{log_path.read_text()}"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    print(f"replay: build {built:.1f} s, healthy after {healthy:.1f} s, stop {stopped:.1f} s")
    shutil.rmtree(root, ignore_errors=True)  # a few hundred MB; kept only when the test fails

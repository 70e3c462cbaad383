"""Read the Dockerfile and .dockerignore, and replay a build stage on this machine without Docker.

The parser covers the Dockerfile subset the project uses: FROM ... AS, WORKDIR, COPY, ENV, RUN,
ENTRYPOINT, HEALTHCHECK, EXPOSE, USER, STOPSIGNAL and comments, with `\\` line continuations.
The replay maps every absolute path of the image onto a temporary directory standing in for the
image's root file system and runs each RUN with `/bin/sh -c`, as `docker build` does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# Variables of the calling process that would make the replay use something other than the
# replayed environment (the repository on sys.path, an outer venv, the caller's server knobs).
_LEAKY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its upper-case keyword, the text after it (continuations joined)."""

    keyword: str
    args: str
    line: int

    def flags(self) -> tuple[dict[str, str], str]:
        """The leading `--name=value` flags and the rest of the arguments."""
        return split_flags(self.args)

    def command(self) -> list[str]:
        """RUN, CMD or ENTRYPOINT arguments: the exec form's list, or the shell form via sh -c."""
        return command_form(self.args)


@dataclass
class Stage:
    """A FROM and the instructions up to the next FROM."""

    base: str
    name: str | None
    index: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [step for step in self.instructions if step.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment after every ENV of this stage, on top of `base`."""
        env = dict(base or {})
        for step in self.all("ENV"):
            env.update(parse_env(step.args, env))
        return env


class DockerfileError(ValueError):
    """The Dockerfile uses something this parser or the replay does not understand."""


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each instruction, continuations joined, comments dropped."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comments, parser directives and linter pragmas, also inside continuations
        if not pending and not stripped:
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        yield start, "".join(pending).strip()
        pending = []
    if pending:
        raise DockerfileError(f"line {start}: continuation runs past the end of the file")


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile, in order."""
    stages: list[Stage] = []
    for line, content in logical_lines(text):
        keyword, _, args = content.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            _, image = split_flags(args)
            words = image.split()
            if len(words) == 3 and words[1].upper() == "AS":
                stages.append(Stage(base=words[0], name=words[2], index=len(stages)))
            elif len(words) == 1:
                stages.append(Stage(base=words[0], name=None, index=len(stages)))
            else:
                raise DockerfileError(f"line {line}: cannot read FROM {args!r}")
            continue
        if not stages:
            if keyword == "ARG":
                continue
            raise DockerfileError(f"line {line}: {keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, args, line))
    return stages


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """Leading `--name=value` (or bare `--name`) flags, and what follows them."""
    flags: dict[str, str] = {}
    rest = args.strip()
    while True:
        match = re.match(r"--([A-Za-z][\w-]*)(?:=(\S*))?(?:\s+|$)", rest)
        if match is None:
            return flags, rest
        flags[match.group(1)] = match.group(2) or ""
        rest = rest[match.end() :]


def command_form(args: str) -> list[str]:
    """The exec form (a JSON array of strings) as is; the shell form as `/bin/sh -c text`."""
    text = args.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [str(item) for item in value]
    return ["/bin/sh", "-c", text]


def is_exec_form(args: str) -> bool:
    return command_form(args)[:2] != ["/bin/sh", "-c"]


_VARIABLE = re.compile(
    r"\$(?:(?P<bare>[A-Za-z_]\w*)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:[-+])(?P<word>[^}]*))?\})"
)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Docker's variable substitution: $NAME, ${NAME}, ${NAME:-default}, ${NAME:+alternative}."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("bare") or match.group("name")
        value = env.get(name, "")
        operator, word = match.group("op"), match.group("word") or ""
        if operator == ":-":
            return value or word
        if operator == ":+":
            return word if value else ""
        return value

    return _VARIABLE.sub(substitute, text)


def parse_env(args: str, env: Mapping[str, str]) -> dict[str, str]:
    """The pairs one ENV sets; values expand against the environment before the instruction."""
    words = shlex.split(expand(args, env), posix=True)
    if not words:
        raise DockerfileError("ENV without a value")
    if "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # the legacy `ENV NAME value` form
    pairs: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(f"ENV pair without '=': {word!r}")
        pairs[name] = value
    return pairs


def healthcheck_command(step: Instruction) -> list[str] | None:
    """The HEALTHCHECK's command, or None for HEALTHCHECK NONE."""
    _, rest = step.flags()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() == "NONE":
        return None
    if keyword.upper() != "CMD":
        raise DockerfileError(f"line {step.line}: HEALTHCHECK without CMD")
    return command_form(command)


def user_and_group(step: Instruction) -> tuple[str, str | None]:
    user, _, group = step.args.strip().partition(":")
    return user, group or None


class DockerIgnore:
    """.dockerignore patterns with Docker's meaning: the last matching pattern decides, and a
    pattern matching a parent directory applies to everything under it."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            exception = text.startswith("!")
            if exception:
                text = text[1:].strip()
            text = os.path.normpath(text).lstrip("/")
            if text in ("", "."):
                continue
            self.rules.append((exception, re.compile(_glob_to_regex(text))))

    @classmethod
    def load(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls(path.read_text().splitlines() if path.is_file() else [])

    def excluded(self, relative: str) -> bool:
        parts = PurePosixPath(relative).parts
        candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
        verdict = False
        for exception, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                verdict = not exception
        return verdict


def _glob_to_regex(pattern: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[":
            close = pattern.find("]", index + 1)
            if close == -1:
                out.append(re.escape(char))
                index += 1
            else:
                out.append(pattern[index : close + 1])  # Go's classes: [a-z], [^a-z]
                index = close + 1
        else:
            out.append(re.escape(char))
            index += 1
    return "".join(out)


def context_files(context: Path, source: str, ignore: DockerIgnore) -> list[Path]:
    """The files of `source` (relative to the build context) that reach the build."""
    path = context / source
    if not path.exists():
        raise DockerfileError(f"COPY source {source!r} is not in the build context")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [p for p in files if not ignore.excluded(p.relative_to(context).as_posix())]


@dataclass
class Replay:
    """A build stage replayed under `root`, which stands in for the image's file system."""

    context: Path
    root: Path
    env: dict[str, str]
    workdir: str = "/"
    log: list[str] = field(default_factory=list)

    def host(self, container_path: str) -> Path:
        """Where an absolute path of the image lives on this machine."""
        posix = PurePosixPath(container_path)
        if not posix.is_absolute():
            posix = PurePosixPath(self.workdir) / posix
        return self.root.joinpath(*posix.parts[1:])

    def map_paths(self, text: str, prefixes: list[str]) -> str:
        """`text` with each of the image's absolute `prefixes` replaced by its place here."""
        if not prefixes:
            return text
        choices = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w./-])(?:{choices})(?=[/:\s\"]|$)")
        return pattern.sub(lambda match: str(self.host(match.group(0))), text)


_METADATA = ("LABEL", "EXPOSE", "USER", "STOPSIGNAL", "HEALTHCHECK", "CMD", "ENTRYPOINT")


def base_environment(root: Path) -> dict[str, str]:
    """The caller's environment (so pip keeps its configured index) minus what would leak into
    the replay, with `python` and `python3` of this interpreter first on PATH like the base
    image's /usr/local/bin."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _LEAKY_VARIABLES and not name.startswith("PLANNER_")
    }
    bin_dir = root / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    interpreter = getattr(sys, "_base_executable", None) or sys.executable
    for name in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(interpreter)} "$@"\n')
        wrapper.chmod(0o755)
    env["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", os.defpath)])
    return env


def image_paths(stage: Stage) -> list[str]:
    """Absolute paths the stage names: its WORKDIRs, absolute COPY targets, `-m venv` targets."""
    paths: set[str] = set()
    for step in stage.instructions:
        if step.keyword == "WORKDIR" and step.args.startswith("/"):
            paths.add(step.args.rstrip("/") or "/")
        elif step.keyword == "COPY":
            _, rest = step.flags()
            target = shlex.split(rest)[-1]
            if target.startswith("/"):
                paths.add(target.rstrip("/"))
        elif step.keyword == "RUN":
            paths.update(re.findall(r"-m\s+venv\s+(?:--\S+\s+)*(/[^\s;&|]+)", step.args))
    return sorted(paths)


def replay_stage(stage: Stage, context: Path, root: Path, run_timeout: float = 600.0) -> Replay:
    """Run `stage` under `root`: COPY from `context` (honouring .dockerignore), ENV, WORKDIR and
    RUN via /bin/sh -c; raise on a failed step or an instruction the replay cannot perform."""
    replay = Replay(context=context, root=root, env=base_environment(root))
    ignore = DockerIgnore.load(context)
    prefixes = image_paths(stage)
    for step in stage.instructions:
        where = f"line {step.line}: {step.keyword} {step.args}"
        if step.keyword == "ENV":
            replay.env.update(parse_env(replay.map_paths(step.args, prefixes), replay.env))
        elif step.keyword == "WORKDIR":
            replay.workdir = str(PurePosixPath(replay.workdir) / expand(step.args, replay.env))
            replay.host(replay.workdir).mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            _copy(replay, step, ignore)
        elif step.keyword == "RUN":
            flags, rest = step.flags()
            if flags:
                raise DockerfileError(f"{where}: RUN flags are not replayed")
            command = command_form(replay.map_paths(rest, prefixes))
            replay.log.append(f"$ {' '.join(command)}")
            result = subprocess.run(
                command,
                cwd=replay.host(replay.workdir),
                env=replay.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=run_timeout,
                check=False,
            )
            replay.log.append(result.stdout)
            if result.returncode != 0:
                raise DockerfileError(f"{where}: exit {result.returncode}\n{result.stdout[-4000:]}")
        elif step.keyword in _METADATA:
            continue  # nothing to do at build time
        else:
            raise DockerfileError(f"{where}: not replayed")
    return replay


def _copy(replay: Replay, step: Instruction, ignore: DockerIgnore) -> None:
    flags, rest = step.flags()
    if "from" in flags:
        raise DockerfileError(f"line {step.line}: COPY --from is not replayed")
    raw = command_form(rest) if is_exec_form(rest) else shlex.split(rest)
    words = [expand(word, replay.env) for word in raw]
    if len(words) < 2:
        raise DockerfileError(f"line {step.line}: COPY needs a source and a destination")
    *sources, target = words
    into_directory = target.endswith("/") or len(sources) > 1
    destination = replay.host(target)
    for source in sources:
        source_path = replay.context / source
        files = context_files(replay.context, source, ignore)
        if not files:
            raise DockerfileError(f"line {step.line}: {source} is excluded by .dockerignore")
        if source_path.is_dir():
            for file in files:
                out = destination / file.relative_to(source_path)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)
        else:
            out = destination / source_path.name if into_directory else destination
            out.parent.mkdir(parents=True, exist_ok=True)
            for file in files:
                shutil.copy2(file, out)


def runtime_environment(
    stage: Stage, root: Path, prefixes: list[str]
) -> tuple[dict[str, str], Path]:
    """The environment and working directory a container of `stage` starts with, mapped under
    `root` (where the build stages were replayed)."""
    replay = Replay(context=root, root=root, env=base_environment(root))
    for step in stage.instructions:
        if step.keyword == "ENV":
            replay.env.update(parse_env(replay.map_paths(step.args, prefixes), replay.env))
        elif step.keyword == "WORKDIR":
            replay.workdir = str(PurePosixPath(replay.workdir) / expand(step.args, replay.env))
    workdir = replay.host(replay.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return replay.env, workdir

"""The container image without a Docker daemon: its Dockerfile as Docker parses it, its
build context as ``.dockerignore`` cuts it, and its install done for real in a fresh
virtualenv.

``Image.build`` lays out what ``docker build`` would: the build context (the checkout
minus ``.dockerignore``) copied to ``<root>/app`` (the ``WORKDIR``), the ``RUN``
commands run there by ``sh -c`` with the image's ``ENV`` and a fresh virtualenv first on
``PATH`` standing in for the image's Python — except ``useradd``, which would add a user
to this machine (the uid it names is used as is: the kernel needs no passwd entry).
Absolute paths of the image (``/app``, ``/data``) are mapped under ``<root>``. The
virtualenv is made from a Python 3.11+ that the image's user may run (the image's own
is world-readable, a per-user pyenv is not), when this machine has one.

Invariants: everything lives under one temporary root, world-readable like an image's
files, removed by ``Image.remove``; nothing of the developer's environment
(``PYTHONPATH``, ``VIRTUAL_ENV``) reaches a build command, and nothing of this machine's
environment but the test suite's orphan token reaches what runs in the "container".
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerfile

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# A fresh venv plus the reference extra from the local index: ~25 s on 2 cores.
BUILD_SECONDS = 240.0
# What python:3.11-slim itself sets (its PYTHON_VERSION and GPG_KEY play no part here),
# and HOME as Docker sets it from the USER's passwd entry (useradd --home-dir).
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/nonexistent",
}
TOKEN_VAR = "SUPERVISE_TEST_TOKEN"
# Environment keys a build never inherits from whoever runs the tests.
_PRIVATE = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction as buildkit's parser reads it."""

    cmd: str  # upper case: FROM, RUN, ...
    exec_form: bool  # JSON array form (no shell between Docker and the program)
    flags: tuple[str, ...]
    value: tuple[str, ...]
    line: int

    @property
    def text(self) -> str:
        return " ".join(self.value)


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Every instruction of ``path``, in order, parsed by Docker's own parser."""
    commands: Any = dockerfile.parse_file(str(path))
    return [
        Instruction(
            cmd=str(c.cmd).upper(),
            exec_form=bool(c.json),
            flags=tuple(c.flags),
            value=tuple(c.value),
            line=int(c.start_line),
        )
        for c in commands
    ]


def only(instructions: list[Instruction], cmd: str) -> Instruction:
    """The single ``cmd`` instruction; fails when there are none or several."""
    found = [i for i in instructions if i.cmd == cmd]
    assert len(found) == 1, f"want one {cmd}, got {len(found)}: {found}"
    return found[0]


def image_env(instructions: list[Instruction]) -> dict[str, str]:
    """The ``ENV`` of the image, in order (``KEY VALUE`` pairs as the parser gives them)."""
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.cmd == "ENV":
            pairs = instruction.value
            env.update(zip(pairs[::2], pairs[1::2], strict=True))
    return env


def _pattern(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern as a regex over a context-relative path."""
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[re.Pattern[str]]:
    """The patterns of ``.dockerignore``, anchored at the context root as Docker does.

    Raises:
        AssertionError: a ``!`` exception, which this reader does not implement.
    """
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), f"exceptions are not supported here: {line!r}"
        patterns.append(_pattern(line.strip("/")))
    return patterns


def is_ignored(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    """Whether ``relative`` (or a directory it is in) is left out of the build context."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


def context_files(source: Path = ROOT) -> Iterator[Path]:
    """Files of the build context: everything under ``source`` not ignored."""
    patterns = ignore_patterns()
    for directory, subdirs, files in os.walk(source):
        base = Path(directory)
        kept = [d for d in subdirs if not is_ignored(str((base / d).relative_to(source)), patterns)]
        subdirs[:] = kept
        for name in files:
            path = base / name
            if not is_ignored(str(path.relative_to(source)), patterns):
                yield path


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without the developer's Python settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in _PRIVATE}
    env.update(extra)
    return env


def user_of(instructions: list[Instruction]) -> tuple[int, int]:
    """The ``USER uid:gid`` the image runs as."""
    uid, gid = only(instructions, "USER").text.split(":")
    return int(uid), int(gid)


def as_user(uid: int, gid: int) -> list[str]:
    """The argv prefix that runs a program as ``uid:gid`` with no other group."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]


def _python_for(uid: int, gid: int) -> str | None:
    """A Python >= 3.11 on this machine that ``uid`` can run, or None."""
    base = getattr(sys, "_base_executable", sys.executable)
    candidates = [base, shutil.which("python3.11"), "/usr/local/bin/python3", "/usr/bin/python3"]
    probe = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
    for candidate in dict.fromkeys(c for c in candidates if c):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            # Exec'd by a process already running as the user, as the supervisor execs
            # its units (setpriv's own exec is not the test: it may pass where that fails).
            ran = subprocess.run(
                [*as_user(uid, gid), "/bin/sh", "-c", 'exec "$0" -I -c "$1"', candidate, probe],
                cwd="/",
                capture_output=True,
                timeout=30,
                check=False,
            )
            if ran.returncode == 0:
                return candidate
    return None


@dataclass
class Image:
    """An image laid out under ``root`` (see the module docstring)."""

    root: Path
    instructions: list[Instruction]
    # Whether the image's user can run its Python here (else only root-run checks apply).
    user_can_run: bool = False

    @property
    def workdir(self) -> Path:
        return self.path(only(self.instructions, "WORKDIR").text)

    @property
    def venv(self) -> Path:
        return self.root / "python"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def path(self, absolute: str) -> Path:
        """Where the image's absolute path lives here."""
        return self.root / absolute.lstrip("/")

    def map_paths(self, command: str) -> str:
        """``command`` with the image's absolute /app and /data paths mapped under ``root``."""
        return re.sub(r"(?<![\w.])/(app|data)\b", lambda m: str(self.path(m.group(0))), command)

    def build_env(self) -> dict[str, str]:
        """What a ``RUN`` sees: the image's ``ENV``, its python first on ``PATH``.

        The rest is this machine's environment (its pip configuration among it), as a
        build machine's would be.
        """
        path = f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return clean_env({**image_env(self.instructions), "PATH": path})

    def run_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """What the container's processes see: the base image's and the image's ``ENV``
        only (no variable of this machine), plus ``extra``; the orphan net's token
        passes, so the suite still sees every process started."""
        env = {**BASE_IMAGE_ENV, **image_env(self.instructions)}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env['PATH']}"
        if TOKEN_VAR in os.environ:
            env[TOKEN_VAR] = os.environ[TOKEN_VAR]
        return {**env, **(extra or {})}

    @classmethod
    def build(cls) -> Image:
        """Copy the context, make the Python, run the ``RUN`` commands; see the docstring.

        Raises:
            AssertionError: a step failed, with its output.
        """
        root = Path(tempfile.mkdtemp(prefix="supervise-image-"))
        root.chmod(0o755)  # the image's user must reach /app, as in an image
        image = cls(root, parse_dockerfile())
        try:
            workdir = image.workdir
            for source in context_files():
                target = workdir / source.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
            python = _python_for(*user_of(image.instructions))
            image.user_can_run = python is not None
            _run([python or sys.executable, "-m", "venv", str(image.venv)], root, clean_env({}))
            for instruction in image.instructions:
                if instruction.cmd != "RUN" or instruction.text.startswith("useradd "):
                    continue
                _run(["sh", "-c", image.map_paths(instruction.text)], workdir, image.build_env())
        except BaseException:
            image.remove()
            raise
        return image

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _run(argv: list[str], cwd: Path, env: Mapping[str, str]) -> None:
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
        check=False,
    )
    assert result.returncode == 0, (
        f"want {argv} to exit 0 in {cwd}, got {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )

"""The supervisors under test: for each, its config for N services and the commands that
start the stack, restart one unit, change one unit's environment, and ask for status.

Every tool runs the same service command (`python -S bench/service.py --port P ...`)
with the same ports, fixed by the benchmark, and each tool's own defaults except where
noted (circus needs `copy_env` to pass the environment on at all). A command that a
tool has no mechanism for is None and its figure is reported as n/a.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SERVICE = BENCH / "service.py"
FLOOR = BENCH / "floor.sh"
ANCHORS_VENV = BENCH / ".anchors-venv"
CONSOLE_SCRIPT = "import sys; from supervisor.cli import main; sys.exit(main())"
ANCHOR_PACKAGES = ("supervisor", "honcho", "circus")  # PyPI names, installed only there


@dataclass(frozen=True)
class Service:
    """One service: its index, port and starting SIGNATURE."""

    index: int
    port: int
    signature: str


@dataclass(frozen=True)
class ServiceArgs:
    delay: float
    grandchild: str  # none | group | session
    lifetime: float

    def argv(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-S",
            str(SERVICE),
            "--port",
            str(port),
            "--delay",
            str(self.delay),
            "--grandchild",
            self.grandchild,
            "--lifetime",
            str(int(self.lifetime)),
        ]


class Tool:
    """One supervisor under test, configured for one stack in `workdir`."""

    name = ""

    def __init__(self, workdir: Path, services: list[Service], args: ServiceArgs) -> None:
        self.workdir = workdir
        self.services = services
        self.args = args
        self.signatures = {s.index: s.signature for s in services}

    def write_config(self) -> None:
        """Write the stack's config file(s) for the current signatures."""

    def start(self) -> list[str]:
        raise NotImplementedError

    def restart(self, index: int) -> list[str] | None:
        return None

    def change_env(self, index: int, signature: str) -> list[str] | None:
        """Apply SIGNATURE=`signature` to one service through the tool's own mechanism;
        returns the command that makes it take effect (a config file may be rewritten
        first, outside the timing)."""
        return None

    def status(self) -> list[str] | None:
        return None

    def extra_env(self) -> dict[str, str]:
        """Environment the tool itself needs (added to the stack's)."""
        return {}


def anchor_bin(name: str) -> str:
    return str(ANCHORS_VENV / "bin" / name)


class Floor(Tool):
    """A bash loop; restart = kill + wait + respawn, driven through a FIFO."""

    name = "floor"

    def write_config(self) -> None:
        fifo = self.workdir / "control.fifo"
        if not fifo.exists():
            import os

            os.mkfifo(fifo, 0o600)

    def start(self) -> list[str]:
        specs = [f"{s.port}:{self.signatures[s.index]}" for s in self.services]
        return [
            "bash",
            str(FLOOR),
            str(self.workdir / "control.fifo"),
            sys.executable,
            str(SERVICE),
            str(self.args.delay),
            self.args.grandchild,
            *specs,
        ]

    def _say(self, line: str) -> list[str]:
        fifo = shlex.quote(str(self.workdir / "control.fifo"))
        return ["sh", "-c", f"echo {shlex.quote(line)} > {fifo}"]

    def restart(self, index: int) -> list[str] | None:
        return self._say(f"restart {index}")

    def change_env(self, index: int, signature: str) -> list[str] | None:
        self.signatures[index] = signature
        return self._say(f"env {index} {signature}")


class Supervise(Tool):
    """One model per service (m0, m1, ...), one per_model process injecting SIGNATURE;
    env change = `supervise set MODEL SIGNATURE=...`.

    With `frozen` set (a directory holding a copy of `supervisor/`), every supervise
    process of the run imports that copy, so edits to the working tree during a run do
    not mix code versions in one table."""

    name = "supervise"
    frozen: Path | None = None

    @property
    def stack(self) -> Path:
        return self.workdir / "supervise.toml"

    @classmethod
    def command(cls) -> list[str]:
        script = Path(sys.executable).parent / "supervise"
        if cls.frozen is None and script.exists():
            return [str(script)]
        # What the installed `supervise` script runs (`-m` would add runpy's imports).
        return [sys.executable, "-c", CONSOLE_SCRIPT]

    def extra_env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.frozen)} if self.frozen is not None else {}

    def write_config(self) -> None:
        lines = []
        for s in self.services:
            lines += [
                f"[models.m{s.index}]",
                f'SIGNATURE = "{self.signatures[s.index]}"',
                f'BPORT = "{s.port}"',
                "",
            ]
        argv = self.args.argv(0)
        argv[argv.index("--port") + 1] = "${model.BPORT}"
        lines += [
            "[processes.svc]",
            "per_model = true",
            f"command = [{', '.join(_toml_str(a) for a in argv)}]",
            'inject = ["SIGNATURE"]',
            'ready = { tcp = "${model.BPORT}" }',
            "",
        ]
        self.stack.write_text("\n".join(lines))

    def start(self) -> list[str]:
        return [*self.command(), "run", "-c", str(self.stack)]

    def restart(self, index: int) -> list[str] | None:
        return [*self.command(), "restart", f"m{index}/svc", "-c", str(self.stack)]

    def change_env(self, index: int, signature: str) -> list[str] | None:
        self.signatures[index] = signature
        return [
            *self.command(),
            "set",
            f"m{index}",
            f"SIGNATURE={signature}",
            "-c",
            str(self.stack),
        ]

    def status(self) -> list[str] | None:
        return [*self.command(), "status", "-c", str(self.stack)]


class Supervisord(Tool):
    """One [program:uI] per service (each its own group); env change = edit the file +
    `supervisorctl update`. supervisord's defaults otherwise (startsecs = 1,
    stopasgroup = false)."""

    name = "supervisord"

    @property
    def conf(self) -> Path:
        return self.workdir / "supervisord.conf"

    def write_config(self) -> None:
        d = self.workdir
        lines = [
            "[supervisord]",
            "nodaemon = true",
            f"logfile = {d}/supervisord.log",
            f"pidfile = {d}/supervisord.pid",
            f"childlogdir = {d}",
            "loglevel = warn",
            "",
            "[unix_http_server]",
            f"file = {d}/supervisor.sock",
            "",
            "[supervisorctl]",
            f"serverurl = unix://{d}/supervisor.sock",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
        ]
        for s in self.services:
            lines += [
                f"[program:u{s.index}]",
                f"command = {shlex.join(self.args.argv(s.port))}",
                f'environment = SIGNATURE="{self.signatures[s.index]}"',
                "autorestart = true",
                f"stdout_logfile = {d}/u{s.index}.log",
                "redirect_stderr = true",
                "",
            ]
        self.conf.write_text("\n".join(lines))

    def _ctl(self, *words: str) -> list[str]:
        return [anchor_bin("supervisorctl"), "-c", str(self.conf), *words]

    def start(self) -> list[str]:
        return [anchor_bin("supervisord"), "-n", "-c", str(self.conf)]

    def restart(self, index: int) -> list[str] | None:
        return self._ctl("restart", f"u{index}")

    def change_env(self, index: int, signature: str) -> list[str] | None:
        self.signatures[index] = signature
        self.write_config()
        return self._ctl("update")

    def status(self) -> list[str] | None:
        return self._ctl("status")


class Circus(Tool):
    """One [watcher:uI] per service, `copy_env = true`; restart = `circusctl restart
    --waiting`; env change = edit the file + `circusctl reloadconfig --waiting`
    (`circusctl set W env` takes no value from the command line)."""

    name = "circus"

    @property
    def ini(self) -> Path:
        return self.workdir / "circus.ini"

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.workdir}/circus-ctl.sock"

    def write_config(self) -> None:
        d = self.workdir
        lines = [
            "[circus]",
            f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = ipc://{d}/circus-pub.sock",
            f"stats_endpoint = ipc://{d}/circus-stats.sock",
            "statsd = false",
            f"logoutput = {d}/circusd.log",
            "loglevel = warning",
            "",
        ]
        for s in self.services:
            argv = self.args.argv(s.port)
            lines += [
                f"[watcher:u{s.index}]",
                f"cmd = {argv[0]}",
                f"args = {shlex.join(argv[1:])}",
                "copy_env = true",
                "",
                f"[env:u{s.index}]",
                f"SIGNATURE = {self.signatures[s.index]}",
                "",
            ]
        self.ini.write_text("\n".join(lines))

    def _ctl(self, *words: str) -> list[str]:
        return [anchor_bin("circusctl"), "--endpoint", self.endpoint, "--timeout", "30", *words]

    def start(self) -> list[str]:
        return [anchor_bin("circusd"), str(self.ini)]

    def restart(self, index: int) -> list[str] | None:
        return self._ctl("restart", f"u{index}", "--waiting")

    def change_env(self, index: int, signature: str) -> list[str] | None:
        self.signatures[index] = signature
        self.write_config()
        return self._ctl("reloadconfig", "--waiting")

    def status(self) -> list[str] | None:
        return self._ctl("status")


class Honcho(Tool):
    """A Procfile, one line per service (`SIGNATURE=... exec python ...`); honcho has no
    per-process restart and no environment change."""

    name = "honcho"

    def write_config(self) -> None:
        lines = [
            f"u{s.index}: SIGNATURE={self.signatures[s.index]} exec "
            f"{shlex.join(self.args.argv(s.port))}"
            for s in self.services
        ]
        (self.workdir / "Procfile").write_text("\n".join(lines) + "\n")

    def start(self) -> list[str]:
        return [
            anchor_bin("honcho"),
            "start",
            "-f",
            str(self.workdir / "Procfile"),
            "-d",
            str(self.workdir),
        ]


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


TOOLS: dict[str, type[Tool]] = {
    cls.name: cls for cls in (Floor, Supervise, Supervisord, Honcho, Circus)
}
ANCHORS = ("supervisord", "honcho", "circus")

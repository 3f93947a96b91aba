"""Procfile mode side by side with real honcho (2.0): the same Procfile and `.env` under
`honcho start` and `supervise run` give each process the same PORT and environment,
run the same subset, and exit with the same code."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PY, wait_until

HONCHO = shutil.which("honcho", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(HONCHO is None, reason="honcho is in the test extra")

DUMP = (
    f'{PY} -c "import json, os, sys; '
    "json.dump({k: os.environ.get(k) for k in ('PORT', 'GREETING', 'FROM_SHELL')}, "
    "open(sys.argv[1], 'w'))\""
)


def procfile(tmp: Path, lines: dict[str, str], env: str = "") -> Path:
    (tmp / "Procfile").write_text("".join(f"{n}: {c}\n" for n, c in lines.items()))
    (tmp / ".env").write_text(env)
    return tmp / "Procfile"


def run_tool(
    tool: str, tmp: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    command = (
        [str(HONCHO), "start", *args]
        if tool == "honcho"
        else [PY, "-m", "supervisor", "run", *args]
    )
    return subprocess.run(
        command,
        cwd=tmp,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def dumps(tmp: Path, names: list[str]) -> dict[str, dict[str, str | None]]:
    return {n: json.loads((tmp / f"{n}.json").read_text()) for n in names}


def test_ports_and_environment_match_honcho_with_port_in_dot_env(tmp_path: Path) -> None:
    seen = {}
    for tool in ("honcho", "supervise"):
        tmp = tmp_path / tool
        tmp.mkdir()
        procfile(
            tmp,
            {name: f"{DUMP} {name}.json && sleep 0.3" for name in ("web", "worker", "clock")},
            # quoted: honcho drops the spaces of an unquoted value (a difference)
            env='PORT=7000\nGREETING="hello from dotenv"\n',
        )
        args = ["--exit-on-end"] if tool == "supervise" else []
        result = run_tool(tool, tmp, *args, env={"FROM_SHELL": "yes", "PORT": ""})
        assert result.returncode == 0, (tool, result.stdout[-2000:], result.stderr[-2000:])
        seen[tool] = dumps(tmp, ["web", "worker", "clock"])
    assert seen["supervise"] == seen["honcho"]
    assert [seen["honcho"][n]["PORT"] for n in ("web", "worker", "clock")] == [
        "7000",
        "7100",
        "7200",
    ]


@pytest.mark.parametrize("named", [["worker", "clock"], ["clock", "worker"]])
def test_a_named_subset_runs_as_under_honcho_start(tmp_path: Path, named: list[str]) -> None:
    for tool in ("honcho", "supervise"):
        tmp = tmp_path / tool
        tmp.mkdir()
        procfile(tmp, {n: f"{DUMP} {n}.json && sleep 0.3" for n in ("web", "worker", "clock")})
        args = named + (["--exit-on-end"] if tool == "supervise" else [])
        result = run_tool(tool, tmp, *args, env={"PORT": "6000"})
        assert result.returncode == 0, (tool, result.stderr[-2000:])
        assert not (tmp / "web.json").exists(), tool
        # honcho numbers the ports of the processes it runs, in the order they are named
        ports = {n: dumps(tmp, [n])[n]["PORT"] for n in named}
        assert ports == {named[0]: "6000", named[1]: "6100"}, (tool, ports)


def test_a_failing_process_ends_the_run_with_its_code_as_under_honcho(tmp_path: Path) -> None:
    codes = {}
    for tool in ("honcho", "supervise"):
        tmp = tmp_path / tool
        tmp.mkdir()
        procfile(tmp, {"web": "sleep 30", "broken": "sleep 0.2; exit 3"})
        codes[tool] = run_tool(tool, tmp).returncode
    assert codes == {"honcho": 3, "supervise": 3}


def test_exit_0_tears_down_the_rest_only_with_exit_on_end(tmp_path: Path) -> None:
    procfile(tmp_path, {"web": "sleep 30", "once": "echo done"})
    assert run_tool("honcho", tmp_path).returncode == 0  # honcho stops everything
    assert run_tool("supervise", tmp_path, "--exit-on-end").returncode == 0
    proc = subprocess.Popen(
        [PY, "-m", "supervisor", "run", "--log-format", "json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        wait_until(
            lambda: lines.append(proc.stdout.readline()) or '"exited"' in lines[-1],  # type: ignore[union-attr,func-returns-value]
            "once exited",
        )
        assert proc.poll() is None  # supervise's default: the others run on
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_minus_f_and_minus_e_are_honchos_flags(tmp_path: Path) -> None:
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    (elsewhere / "Procfile.dev").write_text(f"web: {DUMP} web.json\n")
    (elsewhere / "dev.env").write_text('GREETING="from -e"\n')
    for tool in ("honcho", "supervise"):
        tmp = tmp_path / tool
        tmp.mkdir()
        args = ["-f", str(elsewhere / "Procfile.dev"), "-e", str(elsewhere / "dev.env")]
        if tool == "honcho":
            args += ["-d", str(tmp)]
        result = run_tool(tool, tmp, *args, *(["--exit-on-end"] if tool == "supervise" else []))
        assert result.returncode == 0, (tool, result.stderr[-2000:])
    # honcho runs in --app-root (-d); supervise in the Procfile's directory
    assert json.loads((tmp_path / "honcho" / "web.json").read_text())["GREETING"] == "from -e"
    assert json.loads((elsewhere / "web.json").read_text())["GREETING"] == "from -e"


def test_a_bad_dot_env_line_is_named_with_file_and_line(tmp_path: Path) -> None:
    procfile(tmp_path, {"web": "true"}, env="GOOD=1\nthis is not a pair\n")
    result = subprocess.run(
        [PY, "-m", "supervisor", "check"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"{tmp_path / '.env'}: line 2: cannot parse 'this is not a pair'" in result.stderr

"""Log files: each unit's output and the supervisor's events, as printed, masked, in
size-rotated files that keep `log_backups` old files and lose no line of the current one;
JSON lines with OpenTelemetry's log data model names."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from supervisor.output.logfiles import RotatingFile
from tests.helpers import PY, Run, wait_until, write_stack

LINE = re.compile(r"line (\d{4}) x+$")


def kept(path: Path) -> list[Path]:
    """The current file and its rotated ones, oldest first."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*rotated, path] if path.exists() else rotated


def text_of(path: Path) -> str:
    """A log file's text; "" while it does not exist (also for the moment of a rotation,
    between the rename of the current file and the creation of the next)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def numbers(lines: list[str]) -> list[int]:
    found = [LINE.search(line) for line in lines]
    return [int(m.group(1)) for m in found if m]


@pytest.mark.parametrize("backups", [0, 1, 3])
def test_rotation_keeps_backups_files_under_the_size_and_splits_no_line(
    tmp_path: Path, backups: int
) -> None:
    path = tmp_path / "unit.log"
    file = RotatingFile(path, max_size=1000, backups=backups)
    written = [f"line {i:04d} " + "x" * 30 for i in range(300)]
    for start in range(0, 300, 7):  # batches, as the writer thread hands them over
        file.write(written[start : start + 7])
    file.close()
    files = kept(path)
    assert [p.name for p in files] == [f"unit.log.{i}" for i in range(backups, 0, -1)] + [
        "unit.log"
    ]
    text = [p.read_text() for p in files]
    assert all(len(t.encode()) <= 1000 for t in text)
    assert all(t.endswith("\n") for t in text)
    lines = [line for t in text for line in t.splitlines()]
    assert lines == written[-len(lines) :]  # contiguous, ending with the last line
    per_file = 1000 // len(written[0] + "\n")  # rotation only between whole lines
    assert len(path.read_text().splitlines()) == (len(written) - 1) % per_file + 1


def test_a_line_longer_than_the_size_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "unit.log"
    file = RotatingFile(path, max_size=100, backups=2)
    file.write(["short", "y" * 500, "after"])
    file.close()
    assert [p.read_text() for p in kept(path)] == ["short\n", "y" * 500 + "\n", "after\n"]


def test_lowering_the_backups_removes_the_files_numbered_above_at_the_next_rotation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "unit.log"
    file = RotatingFile(path, max_size=100, backups=3)
    file.write([f"line {i} " + "x" * 40 for i in range(10)])
    file.close()
    assert [p.name for p in kept(path)] == ["unit.log.3", "unit.log.2", "unit.log.1", "unit.log"]
    (tmp_path / "other.log.7").write_text("another file's backup\n")  # left alone
    file = RotatingFile(path, max_size=100, backups=1)  # a reload lowered `log_backups`
    file.write([f"more {i} " + "y" * 40 for i in range(4)])
    file.close()
    assert [p.name for p in kept(path)] == ["unit.log.1", "unit.log"]
    assert (tmp_path / "other.log.7").exists()


def test_the_directories_made_for_a_log_file_are_each_0750(tmp_path: Path) -> None:
    """`mkdir(parents=True)` gave the parents the default mode (0755 under umask 022)."""
    old = os.umask(0o022)
    try:
        RotatingFile(tmp_path / "logs" / "alpha" / "sub" / "trade.log", 100, 1).close()
    finally:
        os.umask(old)
    for directory in ("logs", "logs/alpha", "logs/alpha/sub"):
        assert stat.S_IMODE((tmp_path / directory).stat().st_mode) == 0o750, directory
    assert stat.S_IMODE((tmp_path / "logs/alpha/sub/trade.log").stat().st_mode) == 0o640


PRINTER = """
import os, time
for i in range(300):
    print(f"line {i:04d} " + "x" * 30, flush=True)
print("the key is", os.environ["API_KEY"], flush=True)
print("done", flush=True)
time.sleep(3600)
"""

SECRET = "sk-live-0123456789abcdef"


def stack_text(extra: str = "") -> str:
    return f"""
[supervise]
log_dir = "logs"
log_max_size = 2048
log_backups = 2
{extra}

[models.alpha]
API_KEY = "{SECRET}"

[processes.printer]
per_model = true
command = ["{PY}", "-c", '''{PRINTER}''']
inject = ["API_KEY"]
ready = {{ log = "^done" }}

[processes.quiet]
command = ["{PY}", "-c", "print('not logged', flush=True); import time; time.sleep(3600)"]
log = false

[processes.custom]
command = ["{PY}", "-c", "print('to my own file', flush=True); import time; time.sleep(3600)"]
log = "../custom-${{process}}.log"
"""


def test_unit_output_and_events_go_to_rotated_masked_json_files(tmp_path: Path) -> None:
    run = Run(write_stack(tmp_path, stack_text()))  # --log-format json: files are JSON too
    logs = tmp_path / "logs"
    current = logs / "alpha" / "printer.log"
    try:
        run.event("alpha/printer", "running", ready=True)
        wait_until(lambda: '"done"' in text_of(current), "done logged")
        files = kept(current)
        assert [p.name for p in files] == ["printer.log.2", "printer.log.1", "printer.log"]
        records = [json.loads(line) for p in files for line in p.read_text().splitlines()]
        assert all(p.stat().st_size <= 2048 for p in files)
        got = numbers([r["body"] for r in records])
        assert got == list(range(300 - len(got), 300))  # nothing lost in the kept files
        last = records[-1]
        assert set(last) == {"timestamp", "body", "attributes"}
        assert last["body"] == "done"
        assert last["attributes"] == {
            "supervise.unit": "alpha/printer",
            "supervise.model": "alpha",
            "supervise.process": "printer",
            "log.iostream": "stdout",
        }
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", last["timestamp"]
        )
        masked = [r["body"] for r in records if r["body"].startswith("the key is")]
        assert masked == ["the key is ***"]
        for path in logs.rglob("*"):
            assert SECRET not in (path.read_text() if path.is_file() else "")

        events = logs / "supervise.log"
        wait_until(lambda: "alpha/printer running" in text_of(events), "events logged")
        event_records = [json.loads(line) for line in events.read_text().splitlines()]
        ready = [r for r in event_records if r["body"].startswith("alpha/printer running")]
        assert ready[-1]["severity_text"] == "INFO" and ready[-1]["severity_number"] == 9
        assert ready[-1]["attributes"]["supervise.event"] == "running"
        assert ready[-1]["attributes"]["process.pid"] > 0

        wait_until(lambda: text_of(tmp_path / "custom-custom.log"), "the custom log file")
        assert "to my own file" in (tmp_path / "custom-custom.log").read_text()
        assert not (logs / "quiet.log").exists()
    finally:
        assert run.stop() == 0
    stopped = [json.loads(line)["body"] for line in events.read_text().splitlines()]
    assert "alpha/printer stopped" in stopped  # written up to the end


def test_text_log_files_are_the_printed_lines_with_a_full_timestamp(tmp_path: Path) -> None:
    run = Run(write_stack(tmp_path, stack_text()), "--log-format", "text")
    current = tmp_path / "logs" / "alpha" / "printer.log"
    events = tmp_path / "logs" / "supervise.log"
    try:
        wait_until(lambda: text_of(current).endswith("| done\n"), "done")
        wait_until(lambda: "alpha/printer running" in text_of(events), "events")
        stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
        lines = current.read_text().splitlines()
        assert re.fullmatch(stamp + r" alpha/printer \| done", lines[-1])
        assert any(line.endswith("alpha/printer | the key is ***") for line in lines)
        assert re.search(
            stamp + r" supervise \| alpha/printer running pid \d+ ready", events.read_text()
        )
    finally:
        assert run.stop() == 0

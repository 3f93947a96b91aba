"""Benchmark supervise against a bash floor and supervisord, honcho and circus (issues 6 and 12).

    /work/venv/bin/python bench/run.py [--quick] [--n 10,50,200] [--repeats 3]
                                       [--tools floor,supervise,supervisord,honcho,circus]

For every repeat, for every N, the tools run in a freshly shuffled order, one trial each
(two boots: see scenarios.py). Prints medians (min–max) and ratios to the floor, checks
supervise against the issue's targets, and writes bench/results/<date>.json (+ .md).

The anchors (supervisord, honcho, circus) live in bench/.anchors-venv, created on first
use; supervisord's distribution imports as `supervisor`, so it never goes near the
project's environment. Nothing started here survives the run: every process carries a
run token, and the end of the run (or Ctrl-C) kills by pid whatever still carries it.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import hashlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import procs
import report
import restart_gap
import scenarios
from tools import (
    ANCHOR_PACKAGES,
    ANCHORS,
    ANCHORS_VENV,
    BENCH,
    TOOLS,
    ServiceArgs,
    Supervise,
    anchor_bin,
)

RESULTS = BENCH / "results"
VENV_TIMEOUT = 600.0  # creating the anchors venv and installing three packages
VERSION_TIMEOUT = 20.0
DEFAULT_NS = "10,50,200"
QUICK_NS = "10,50"
BIG_N = 500  # one round after the repeats, with BIG_TOOLS only
# The floor and supervise only, to keep the whole run under 15 minutes (`--big-tools` adds
# others): supervisord stops its programs one after the other (not within the 20 s bound
# from N = 50 on) and honcho forks one Python worker per process (3.3 GiB RSS at N = 200).
BIG_TOOLS = "floor,supervise"
GAP_RESTARTS = 10
KILL9_REPEATS = 1
CHANGES = 3  # restarts and env changes per boot, each on a unit of its own (quick: 1)
QUICK_IDLE_WINDOW = 5.0
SMALL_N_IDLE_WINDOW = 3.0  # idle window below the largest N (the target is at the largest)
LEFTOVER_EXAMPLES = 3  # command lines kept per boot for what the teardown killed
QUIET_SAMPLE = 0.5  # one look at how busy the machine is before a trial
QUIET_BUSY = 0.15  # "quiet": at most this share of all CPUs busy


class Interrupted(BaseException):
    """SIGTERM or SIGHUP to the benchmark: tear down like Ctrl-C."""


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"N={QUICK_NS}, 1 repeat, {QUICK_IDLE_WINDOW:g} s idle window",
    )
    parser.add_argument("--n", default=None, help=f"comma-separated N (default {DEFAULT_NS})")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument(
        "--big-n",
        type=int,
        default=None,
        metavar="N",
        help=f"one more round at this N with --big-tools (default {BIG_N}; quick and 0: none)",
    )
    parser.add_argument("--big-tools", default=BIG_TOOLS, help=f"default {BIG_TOOLS}")
    parser.add_argument(
        "--gap-restarts",
        type=int,
        default=None,
        metavar="K",
        help=f"restarts per mode of the restart-gap scenario (default {GAP_RESTARTS}, "
        "quick 5; 0: skip it)",
    )
    parser.add_argument(
        "--changes",
        type=int,
        default=None,
        metavar="K",
        help=f"restarts and env changes per boot, each on another unit (default {CHANGES}, "
        "quick 1)",
    )
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help="comma-separated, of: " + ", ".join(TOOLS)
    )
    parser.add_argument(
        "--delay", type=float, default=0.2, help="each service's import delay before it listens (s)"
    )
    parser.add_argument(
        "--idle-window",
        type=float,
        default=None,
        help="idle CPU window at the largest N, scaled to 30 s (default 6)",
    )
    parser.add_argument(
        "--kill9-repeats",
        type=int,
        default=KILL9_REPEATS,
        metavar="K",
        help="make the kill -9 boot (cold start with grandchildren, then SIGKILL to the "
        f"supervisor) in the first K repeats of each tool and N (default {KILL9_REPEATS}: its "
        "answer, who is left, does not vary; 0: never)",
    )
    parser.add_argument(
        "--grandchild",
        choices=["group", "session"],
        default="group",
        help="where the kill -9 boot's grandchildren live",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="before each trial, wait up to S seconds for the machine to be "
        f"at most {QUIET_BUSY * 100:.0f}%% busy (default 0: just record how busy)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="run supervise from the working tree as it is at each launch, instead of a "
        "copy of supervisor/ taken at the start of the run",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: print the tables of an earlier results file and rewrite its .md",
    )
    args = parser.parse_args()
    args.ns = [int(x) for x in (args.n or (QUICK_NS if args.quick else DEFAULT_NS)).split(",")]
    if any(n < 2 for n in args.ns):
        parser.error("every N must be at least 2")
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.big_n is None:
        args.big_n = 0 if args.quick else BIG_N
    if args.gap_restarts is None:
        args.gap_restarts = 5 if args.quick else GAP_RESTARTS
    if args.changes is None:
        args.changes = 1 if args.quick else CHANGES
    if args.changes < 1:
        parser.error("--changes must be at least 1")
    args.big_tool_names = [t.strip() for t in args.big_tools.split(",") if t.strip()]
    args.idle_window = args.idle_window or (QUICK_IDLE_WINDOW if args.quick else 6.0)
    args.tool_names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in args.tool_names + args.big_tool_names if t not in TOOLS]
    if unknown:
        parser.error(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    if args.seed is None:
        args.seed = secrets.randbelow(2**31)
    return args


def ensure_anchors() -> None:
    """Create bench/.anchors-venv with supervisord, honcho and circus if it is missing."""
    wanted = ("supervisord", "supervisorctl", "honcho", "circusd", "circusctl")
    if all(Path(anchor_bin(b)).exists() for b in wanted):
        return
    if ANCHORS_VENV.resolve() == Path(sys.prefix).resolve():
        raise SystemExit("refusing to install supervisord into the running environment")
    print(f"creating {ANCHORS_VENV} with {', '.join(ANCHOR_PACKAGES)} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "venv", str(ANCHORS_VENV)], check=True, timeout=VENV_TIMEOUT
    )
    subprocess.run(
        [anchor_bin("python"), "-m", "pip", "install", "--quiet", *ANCHOR_PACKAGES],
        check=True,
        timeout=VENV_TIMEOUT,
    )


def freeze_supervise(root: Path) -> dict[str, str]:
    """Copy `supervisor/` into the run's temp dir and point supervise at the copy; the
    copy's digest identifies the code every supervise trial of this run ran."""
    source = BENCH.parent / "supervisor"
    target = root / "code"
    shutil.copytree(
        source, target / "supervisor", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    # Bytecode as an install leaves it (pip compiles at install time); without it every
    # start would compile the package, whatever PYTHONDONTWRITEBYTECODE says.
    compileall.compile_dir(str(target / "supervisor"), quiet=1)
    digest = hashlib.sha256()
    for path in sorted((target / "supervisor").rglob("*.py")):
        if path.is_file():
            digest.update(str(path.relative_to(target)).encode() + b"\0" + path.read_bytes())
    Supervise.frozen = target
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import supervisor; print(supervisor.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=VERSION_TIMEOUT,
    ).stdout.strip()
    if not where.startswith(str(target)):
        raise SystemExit(f"the frozen copy of supervisor/ is not the one imported: {where}")
    return {"sha256": digest.hexdigest()[:16], "files": str(source)}


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (
        (done.stdout.strip() or done.stderr.strip()).splitlines()[-1]
        if (done.stdout.strip() or done.stderr.strip())
        else "unknown"
    )


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "host": platform.node(),
    }


def versions(tool_names: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    root = BENCH.parent
    commit = _version(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(root), "status", "--porcelain", "--", "supervisor"])
    version = _version(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('supervise'))"]
    )
    modified = ", supervisor/ modified" if dirty != "unknown" else ""
    found["supervise"] = f"{version} (git {commit}{modified})"
    if "supervisord" in tool_names:
        found["supervisord"] = _version([anchor_bin("supervisord"), "--version"])
    if "honcho" in tool_names:
        found["honcho"] = _version([anchor_bin("honcho"), "--version"])
    if "circus" in tool_names:
        found["circus"] = _version([anchor_bin("circusd"), "--version"])
    found["bash"] = _version(["bash", "-c", "echo $BASH_VERSION"])
    return found


def one_trial(
    tool: str,
    n: int,
    repeat: int,
    args: argparse.Namespace,
    run: str,
    root: Path,
    rng: random.Random,
) -> dict[str, Any]:
    trial: dict[str, Any] = {"tool": tool, "n": n, "repeat": repeat}
    trial["quiet_wait_s"], trial["busy_before"] = wait_quiet(args.quiet_wait)
    trial["loadavg"] = os.getloadavg()[0]
    machine0 = procs.cpu_jiffies()
    idle = args.idle_window if n == max(args.ns) else min(SMALL_N_IDLE_WINDOW, args.idle_window)
    lifetime = 600.0  # no service outlives this, even if everything else failed
    boots = [("a", "none")] + [("b", args.grandchild)] * (repeat < args.kill9_repeats)
    for boot, grandchild in boots:
        service = ServiceArgs(args.delay, grandchild, lifetime)
        trial_id = f"{tool}-n{n}-r{repeat}-{boot}"
        stack = scenarios.Stack(TOOLS[tool], n, service, run, trial_id, root, rng)
        try:
            with stack:
                trial[boot] = (
                    scenarios.boot_a(stack, rng, idle, args.changes)
                    if boot == "a"
                    else scenarios.boot_b(stack)
                )
        except Exception as exc:  # one broken trial is recorded; the run goes on
            trial[boot] = {"error": f"{type(exc).__name__}: {exc}"}
        trial[boot]["leftovers_killed"] = leftovers_summary(
            [{"role": f.role, "command": f.command} for f in stack.leftovers]
        )
    trial["machine_busy"] = procs.busy_fraction(machine0)
    return trial


def leftovers_summary(found: list[dict[str, str]]) -> dict[str, Any]:
    """What the teardown had to kill, by role, with a few example command lines (not
    all 400 of a kill -9 boot)."""
    counts: dict[str, int] = {}
    for item in found:
        counts[item["role"]] = counts.get(item["role"], 0) + 1
    examples = list({item["command"]: None for item in found})[:LEFTOVER_EXAMPLES]
    return {"count": len(found), "by_role": counts, "examples": examples}


def wait_quiet(limit: float) -> tuple[float, float]:
    """Wait (at most `limit` s) until the machine is mostly idle, so another job's load
    does not land in one tool's figures; (seconds waited, busy share last seen)."""
    start = time.monotonic()
    while True:
        before = procs.cpu_jiffies()
        time.sleep(QUIET_SAMPLE)
        busy = procs.busy_fraction(before)
        waited = time.monotonic() - start
        if busy <= QUIET_BUSY or waited >= limit:
            return waited, busy


def _fmt(value: Any, unit: str = "s") -> str:
    return "n/a" if value is None else f"{value:.3f} {unit}".strip()


def progress(index: int, total: int, trial: dict[str, Any], elapsed: float) -> str:
    a, b = trial.get("a", {}), trial.get("b", {})
    parts = [f"cold {_fmt(a.get('cold_start_s'))}"]
    if a.get("restarts"):
        parts.append("restart " + " ".join(_fmt(c.get("answer_s")) for c in a["restarts"]))
    if a.get("env_changes"):
        changes = a["env_changes"]
        collateral = sum(c.get("collateral") or 0 for c in changes)
        times = " ".join(_fmt(c.get("answer_s")) for c in changes)
        parts.append(f"env {times} ({collateral} collateral)")
    if a.get("idle_cpu_30s") is not None:
        parts.append(f"idle {a['idle_cpu_30s']:.3f}")
    if a.get("rss") is not None:
        parts.append(f"rss {a['rss'] / report.MIB:.1f} MiB")
    parts.append(f"SIGTERM {_fmt(a.get('sigterm_gone_s'))}")
    if b:
        kill9 = b.get("kill9_gone_s")
        left = f"not gone: {b.get('kill9_left')}"
        parts.append(f"kill-9 {_fmt(kill9) if kill9 is not None else left}")
    if (a.get("idle_machine_busy") or 0) > report.BUSY_WARNING:
        parts.append(f"machine {a['idle_machine_busy']:.0%} busy during idle window")
    errors = [x["error"] for x in (a, b) if x.get("error")]
    if errors:
        parts.append("ERROR " + "; ".join(errors))
    return (
        f"[{index:>2}/{total}] {elapsed:5.0f}s {trial['tool']:<11} N={trial['n']:<4} "
        f"rep {trial['repeat'] + 1}: " + ", ".join(parts)
    )


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main() -> int:
    args = _parse()
    if args.report is not None:
        document = json.loads(args.report.read_text())
        present(document["meta"], document["trials"], args.report, write_json=False)
        return 0
    if any(t in ANCHORS for t in args.tool_names):
        ensure_anchors()
    rng = random.Random(args.seed)
    run = secrets.token_hex(6)
    started = time.monotonic()
    date = datetime.datetime.now().astimezone()
    root = Path(tempfile.mkdtemp(prefix="supervise-bench-"))
    code = {}
    if "supervise" in args.tool_names and not args.live:
        try:
            code = freeze_supervise(root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    meta = {
        "date": date.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(args.tool_names),
        "ns": args.ns,
        "big_n": args.big_n,
        "repeats": args.repeats,
        "changes": args.changes,
        "tools": args.tool_names,
        "delay_s": args.delay,
        "seed": args.seed,
        "idle_window_s": {
            "largest_n": args.idle_window,
            "other_n": min(SMALL_N_IDLE_WINDOW, args.idle_window),
        },
        "grandchild": args.grandchild,
        "quick": args.quick,
        "run_token": run,
        "quiet_wait_s": args.quiet_wait,
        "supervise_code": code or "live working tree (--live)",
    }
    print(
        f"machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['memory_gib']} GiB, Linux {meta['machine']['kernel']}"
    )
    print(
        "versions: "
        + "; ".join(f"{k} {v.removeprefix(k + ' ')}" for k, v in meta["versions"].items())
    )
    if code:
        print(f"supervise runs from a copy of supervisor/ taken now (sha256 {code['sha256']})")
    print(
        f"N={args.ns}, {args.repeats} repeat(s), tools in shuffled order each round, "
        f"seed {args.seed}, run token {procs.RUN_VAR}={run}",
        flush=True,
    )

    trials: list[dict[str, Any]] = []
    orders: list[list[str]] = []
    interrupted = False
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    big_tools = [t for t in args.tool_names if t in args.big_tool_names] if args.big_n else []
    rounds = [(repeat, n) for repeat in range(args.repeats) for n in args.ns]
    rounds += [(0, args.big_n)] if big_tools else []
    total = args.repeats * len(args.ns) * len(args.tool_names) + len(big_tools)
    gap: dict[str, Any] = {}
    try:
        for repeat, n in rounds:
            order = list(args.tool_names if n != args.big_n else big_tools)
            rng.shuffle(order)
            orders.append(order)
            for tool in order:
                trial = one_trial(tool, n, repeat, args, run, root, rng)
                trials.append(trial)
                print(progress(len(trials), total, trial, time.monotonic() - started), flush=True)
        if args.gap_restarts and "supervise" in args.tool_names:
            print(f"restart gap: {args.gap_restarts} restarts per mode", flush=True)
            frozen = {"PYTHONPATH": str(Supervise.frozen)} if Supervise.frozen else {}
            gap = restart_gap.measure_all(
                args.gap_restarts, args.delay, Supervise.command(), frozen
            )
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted = True
        print(f"\ninterrupted ({type(exc).__name__} {exc}): cleaning up", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        survivors = procs.kill_run(run)
        if survivors:
            print(
                f"WARNING: {len(survivors)} process(es) of this run were still alive "
                "and have been killed:",
                file=sys.stderr,
            )
            for found in survivors:
                print(
                    f"  pid {found.pid} [{found.role}, {found.trial}] {found.command}",
                    file=sys.stderr,
                )
        shutil.rmtree(root, ignore_errors=True)
    meta["survivors_at_end"] = len(survivors)
    meta["interrupted"] = interrupted
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    meta["orders"] = orders
    meta["restart_gap"] = gap
    if not trials:
        print("no trial finished: nothing written")
        return 130 if interrupted else 1

    out = args.out or RESULTS / (
        date.strftime("%Y-%m-%d") + ("-quick" if args.quick else "") + ".json"
    )
    present(meta, trials, out, write_json=True)
    return 130 if interrupted else 0


def present(
    meta: dict[str, Any], trials: list[dict[str, Any]], out: Path, *, write_json: bool
) -> None:
    """Print the tables and the targets; write `out` (JSON, if asked) and its .md."""
    main_ns = [n for n in meta["ns"] if any(t["n"] == n for t in trials)]
    big = meta.get("big_n") or 0
    ns = main_ns + ([big] if big not in main_ns and any(t["n"] == big for t in trials) else [])
    tools = [t for t in meta["tools"] if any(x["tool"] == t for x in trials)]
    summary = report.summarize(trials)
    gap = meta.get("restart_gap") or {}
    goals = report.targets(summary, ns, main_ns, gap)
    windows = meta["idle_window_s"]
    idle_note = (
        f"Idle CPU measured over {windows['largest_n']:g} s at N={max(main_ns)} and "
        f"{windows['other_n']:g} s below, scaled to 30 s"
    )
    contention = report.contention(trials)
    print()
    print(report.text_table(summary, tools, ns))
    print(f"{idle_note}. Ratios (×) are to the floor's median in the same run.")
    print(contention)
    if gap:
        print("\nrestart gap (supervise, one server, `set` per restart):")
        print("\n".join(restart_gap.table(gap)))
    print("\nsupervise against the issue's targets:")
    print(report.targets_text(goals))
    out.parent.mkdir(parents=True, exist_ok=True)
    if write_json:
        document = {
            "meta": meta,
            "summary": _json_keys(summary),
            "targets": goals,
            "trials": trials,
        }
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=1) + "\n")
        tmp.replace(out)
    m = meta["machine"]
    versions = "; ".join(f"{k} {v.removeprefix(k + ' ')}" for k, v in meta["versions"].items())
    markdown = (
        f"Measured {meta['date'][:10]} on {m['cpu']} ({m['cores']} cores, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}) with {versions}; "
        f"{meta['repeats']} repeat(s) of every tool at every N in shuffled order, medians "
        f"(min–max), × = ratio to the floor's median. {idle_note}. {contention}\n\n"
        + report.markdown_table(summary, tools, ns)
        + "\n"
        + (
            "Restart gap (supervise, one server, `set` per restart):\n\n```\n"
            + "\n".join(restart_gap.table(gap))
            + "\n```\n\n"
            if gap
            else ""
        )
        + report.targets_text(goals, markdown=True)
        + "\n"
    )
    out.with_suffix(".md").write_text(markdown)
    print(
        f"\nwrote {out.with_suffix('.md')}"
        + (f" and {out}" if write_json else "")
        + (f" ({meta['elapsed_s']:.0f} s)" if "elapsed_s" in meta else "")
    )


def _json_keys(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        tool: {str(n): figures for n, figures in by_n.items()} for tool, by_n in summary.items()
    }


if __name__ == "__main__":
    sys.exit(main())

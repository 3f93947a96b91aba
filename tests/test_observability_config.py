"""Stack-file keys of issue 14 — `mcp` probes, `live`, `log`, `log_dir`, `log_max_size`,
`log_backups` — accepted with their defaults or refused naming the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.check import load_checked
from supervisor.config.spec import (
    DEFAULT_LIVE_FAILURES,
    DEFAULT_LIVE_INTERVAL,
    DEFAULT_LIVE_TIMEOUT,
    DEFAULT_LOG_BACKUPS,
    DEFAULT_LOG_MAX_SIZE,
)
from supervisor.errors import ConfigError
from supervisor.plan import RenderContext, expand, render

SERVER = '[processes.web]\ncommand = "true"\nport = "auto"\n'

INVALID = [
    ("live on a oneshot", '[processes.w]\ncommand = "true"\noneshot = true\nlive = { tcp = "1" }\n',
     ["processes.w", "takes no live probe"]),
    ("live with two kinds", SERVER + 'live = { tcp = "${port}", http = "http://x/" }\n',
     ["processes.web.live", "exactly one of tcp, http, exec, log, notify, mcp (got tcp, http)"]),
    ("live with no kind", SERVER + "live = { interval = 1 }\n",
     ["processes.web.live", "exactly one of"]),
    ("live failures zero", SERVER + 'live = { tcp = "${port}", failures = 0 }\n',
     ["processes.web.live.failures", "greater than or equal to 1"]),
    ("live with a deadline", SERVER + 'live = { tcp = "${port}", within = 5 }\n',
     ["processes.web.live.within"]),
    ("mcp over https", SERVER + 'ready = { mcp = "https://127.0.0.1:${port}/mcp" }\n',
     ["processes.web.ready.mcp", "only http:// URLs are probed"]),
    ("mcp with a broken reference", SERVER + 'ready = { mcp = "http://127.0.0.1:${port/mcp" }\n',
     ["processes.web.ready.mcp", "unterminated"]),
    ("live log with a bad regex", SERVER + 'live = { log = "(" }\n',
     ["processes.web.live.log", "invalid regular expression"]),
    ("live log that backtracks", SERVER + 'live = { log = "(a*)*b" }\n',
     ["processes.web.live.log", "'(a*)*b' repeats a repetition"]),
    ("log = true", SERVER + "log = true\n", ["processes.web.log"]),
    ("a model in a global unit's log", SERVER + 'log = "${model}.log"\n',
     ["processes.web", "${model} cannot be used in a log path; only ${process}"]),
    ("an empty log path", SERVER + 'log = " "\n', ["processes.web", "log path is empty"]),
    ("a size in parsecs", '[supervise]\nlog_max_size = "3 parsecs"\n',
     ["supervise.log_max_size", "expected a size like 10485760"]),
    ("a zero size", "[supervise]\nlog_max_size = 0\n", ["supervise.log_max_size"]),
    ("negative backups", "[supervise]\nlog_backups = -1\n", ["supervise.log_backups"]),
    ("http_serve without health", '[supervise]\nhttp_serve = ["status"]\n',
     ["supervise.http_serve", 'must include "health"']),
    ("the page without status", '[supervise]\nhttp_serve = ["health", "page"]\n',
     ["supervise.http_serve", '"page" needs "status"']),
    ("an unknown view", '[supervise]\nhttp_serve = ["health", "logs"]\n',
     ["supervise.http_serve.1", "'health', 'status', 'metrics' or 'page' (got 'logs')"]),
    ("a view twice", '[supervise]\nhttp_serve = ["health", "health"]\n',
     ["supervise.http_serve", "health listed twice"]),
    ("a process named like the events file",
     '[supervise]\nlog_dir = "logs"\n[processes.supervise]\ncommand = "true"\n',
     ["processes.supervise: its default log file would be the supervisor's own"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in INVALID],
                         ids=[n for n, _, _ in INVALID])  # fmt: skip
def test_an_invalid_observability_key_is_refused_naming_the_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_checked(stack, {})
    message = str(caught.value)
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(
    ("size", "bytes_"),
    [("1048576", 1048576), ('"64KiB"', 65536), ('"64kb"', 65536), ('"10M"', 10485760),
     ('"1.5 GiB"', 1610612736), ('"512"', 512), ('"512B"', 512)],
)  # fmt: skip
def test_log_max_size_takes_bytes_or_a_size_with_a_binary_unit(
    tmp_path: Path, size: str, bytes_: int
) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(f"[supervise]\nlog_max_size = {size}\n")
    loaded, _ = load_checked(stack, {})
    assert loaded.stack.supervise.log_max_size == bytes_


def test_defaults_and_a_rendered_live_probe(tmp_path: Path) -> None:
    stack = tmp_path / "supervise.toml"
    stack.write_text(
        SERVER + 'ready = { mcp = "http://127.0.0.1:${port}/mcp" }\n'
        'live = { mcp = "http://127.0.0.1:${port}/mcp" }\n'
    )
    loaded, _ = load_checked(stack, {})
    settings = loaded.stack.supervise
    assert (settings.log_dir, settings.log_max_size, settings.log_backups) == (
        None,
        DEFAULT_LOG_MAX_SIZE,
        DEFAULT_LOG_BACKUPS,
    )
    unit = expand(loaded.stack.processes, [])["web"]
    context = RenderContext.of(loaded, model_keys={}, ports={"web": 4321})
    rendering = render(unit, context)
    assert rendering.probe is not None and rendering.probe.kind == "mcp"
    assert rendering.probe.target == ("http://127.0.0.1:4321/mcp",)
    live = rendering.live
    assert live is not None
    assert (live.probe.kind, live.probe.target) == ("mcp", ("http://127.0.0.1:4321/mcp",))
    assert (live.probe.interval, live.probe.timeout, live.failures) == (
        DEFAULT_LIVE_INTERVAL,
        DEFAULT_LIVE_TIMEOUT,
        DEFAULT_LIVE_FAILURES,
    )

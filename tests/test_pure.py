"""Pure parts, table-driven: interpolation, Procfiles, publishing, policy, states, plan."""

from __future__ import annotations

import contextlib
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.config.handoff import PublishError, parse_published
from supervisor.config.interpolate import TemplateSyntaxError, interpolate
from supervisor.config.model import process_spec
from supervisor.config.procfile import parse_procfile
from supervisor.config.spec import Process, check_regex
from supervisor.errors import MissingModelKey, UnresolvedReference
from supervisor.osproc.pipes import _split as split_lines
from supervisor.plan import RenderContext, expand, find_cycle, levels, render
from supervisor.policy import FailureWindow, backoff_delay, should_restart
from supervisor.runtime.keys import ModelKeys
from supervisor.secrets import Redactor
from supervisor.state import IllegalTransition, State, Status, advance

VARS = {"HOME": "/home/x", "EMPTY": "", "PORT": "8080"}

INTERPOLATION = [
    ("plain text", "plain text"),
    ("${HOME}/bin", "/home/x/bin"),
    ("${MISSING:-fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${EMPTY}", ""),
    ("$$HOME", "$HOME"),
    ("cost $$5 and ${PORT}", "cost $5 and 8080"),
    ("$HOME stays", "$HOME stays"),
    ("a${PORT}b${PORT}c", "a8080b8080c"),
    ("${MISSING:-}", ""),
]


@pytest.mark.parametrize(("template", "expected"), INTERPOLATION)
def test_interpolation_renders(template: str, expected: str) -> None:
    assert interpolate(template, VARS.get) == expected


@pytest.mark.parametrize("template", ["${", "a ${oops", "${}", "${1BAD}", "${a b}"])
def test_malformed_templates_are_errors(template: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        interpolate(template, VARS.get)


def test_unresolved_name_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(KeyError, match="MISSING"):
        interpolate("x ${MISSING}", VARS.get)


PROCFILES = [
    ("web: run web\nworker: run worker\n", {"web": 5000, "worker": 5100}, []),
    ("# c\n\nweb: a\n\n# d\nclock: b\n", {"web": 5000, "clock": 5100}, []),
    ("web: a\nweb: b\n", {"web": 5000}, ["line 2: duplicate process name 'web'"]),
    ("web: a\n  nonsense here\n", {"web": 5000}, ["line 2: expected 'name: command'"]),
    ("", {}, ["no processes"]),
]


@pytest.mark.parametrize(("text", "ports", "errors"), PROCFILES)
def test_procfile_parsing(text: str, ports: dict[str, int], errors: list[str]) -> None:
    table, problems = parse_procfile(text, "Procfile", 5000)
    assert {n: p["port"] for n, p in table["processes"].items()} == ports
    assert all(p["shell"] for p in table["processes"].values())
    assert len(problems) == len(errors)
    for problem, expected in zip(problems, errors, strict=True):
        assert expected in str(problem)


PUBLISHED = [
    ("SIGNATURE=alpha-v1\n", {"SIGNATURE": "alpha-v1"}),
    ("# comment\n\nA=1\nA=2\n", {"A": "2"}),
    ("URL=http://x/?a=b\n", {"URL": "http://x/?a=b"}),
    ("EMPTY=\n", {"EMPTY": ""}),
]


@pytest.mark.parametrize(("text", "keys"), PUBLISHED)
def test_published_keys_are_parsed(text: str, keys: dict[str, str]) -> None:
    assert parse_published("alpha/init", text) == keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no equals sign\n", "line 1: expected KEY=VALUE"),
        ("A=1\n1BAD=x\n", "line 2: key '1BAD' is invalid"),
        ("SIGNATURE=../evil\n", "SIGNATURE '../evil' is invalid"),
        ("SIGNATURE=a/b\n", "SIGNATURE 'a/b' is invalid"),
    ],
)
def test_bad_published_lines_name_the_unit_and_line(text: str, message: str) -> None:
    with pytest.raises(PublishError) as info:
        parse_published("alpha/init", text)
    assert str(info.value).startswith("alpha/init: SUPERVISE_ENV")
    assert message in str(info.value)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 0.5, 4.0, rng) for n in range(1, 8)]
    assert 0.4 <= delays[0] <= 0.6
    assert 0.8 <= delays[1] <= 1.2
    assert all(d <= 4.0 for d in delays)
    assert delays[-1] >= 3.2
    assert backoff_delay(0, 0.5, 4.0) == 0.0


def test_failure_window_forgets_old_failures() -> None:
    window = FailureWindow(limit=2, window=10.0)
    for t in (0.0, 1.0, 2.0):
        window.record(t)
    assert window.exceeded(2.0)
    assert not window.exceeded(11.5)
    assert window.count(11.5) == 1


@pytest.mark.parametrize(
    ("policy", "code", "oneshot", "again"),
    [
        ("always", 0, False, True),
        ("always", 0, True, False),
        ("on-failure", 0, False, False),
        ("on-failure", 1, False, True),
        ("on-failure", None, False, True),
        ("never", 1, False, False),
    ],
)
def test_restart_policy(policy: str, code: int | None, oneshot: bool, again: bool) -> None:
    assert should_restart(policy, code, oneshot) is again


def test_illegal_transitions_are_refused() -> None:
    status = Status()
    with pytest.raises(IllegalTransition):
        advance("u", status, State.STOPPING)
    running = advance("u", advance("u", status, State.STARTING), State.RUNNING, pid=4)
    assert running.pid == 4
    ready = advance("u", running, State.RUNNING, ready=True)
    assert ready.ready
    assert not advance("u", ready, State.STOPPING).ready


def test_cycle_is_reported_as_a_path() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None


def _process(**fields: object) -> Process:
    return process_spec({"command": "run", **fields})


def test_expansion_and_levels_follow_dependencies() -> None:
    processes = {
        "agent": _process(per_model=True, depends_on={"trade": "ready"}),
        "trade": _process(per_model=True, depends_on={"init": "completed", "math": "ready"}),
        "init": _process(per_model=True, oneshot=True),
        "math": _process(),
    }
    units = expand(processes, ["alpha", "beta"])
    names = list(units)
    assert names.index("alpha/init") < names.index("alpha/trade") < names.index("alpha/agent")
    assert names.index("math") < names.index("beta/trade")
    assert units["beta/trade"].depends_on == (("beta/init", "completed"), ("math", "ready"))
    depth = levels(units)
    assert depth["alpha/agent"] == 2
    assert depth["math"] == depth["alpha/init"] == 0


def test_rendering_injects_only_declared_keys_and_waits_for_missing_ones() -> None:
    processes = {
        "trade": _process(
            per_model=True,
            inject=["SIGNATURE"],
            port="auto",
            command="serve --port ${port} --model ${model}",
            env={"MARKET": "${model.MARKET:-us}"},
        )
    }
    units = expand(processes, ["alpha"])
    context = RenderContext(
        base_dir="/srv",
        env_files={"FROM_FILE": "f"},
        environ={"FROM_ENV": "e"},
        stack_env={},
        processes=processes,
        model_keys={"alpha": {"SIGNATURE": "a-v1", "SECRET": "s"}},
        ports={"alpha/trade": 4100},
        unit_variables={},
    )
    rendering = render(units["alpha/trade"], context)
    env = rendering.environ
    assert rendering.argv == ("serve", "--port", "4100", "--model", "alpha")
    assert (env["SIGNATURE"], env["PORT"], env["MARKET"]) == ("a-v1", "4100", "us")
    assert (env["FROM_FILE"], env["FROM_ENV"]) == ("f", "e")
    assert "SECRET" not in env
    with pytest.raises(MissingModelKey, match="waiting for alpha SIGNATURE"):
        render(units["alpha/trade"], RenderContext(**{**context.__dict__, "model_keys": {}}))
    with pytest.raises(UnresolvedReference, match=r"alpha/trade: command: .*\$\{port\}"):
        render(units["alpha/trade"], RenderContext(**{**context.__dict__, "ports": {}}))


@pytest.mark.parametrize("spare", [0, 12])
def test_listen_fd_launcher_moves_any_descriptor_to_3_with_its_own_pid(spare: int) -> None:
    import os
    import socket
    import subprocess

    from supervisor.osproc.sockets import with_listen_fds

    padding = [socket.socket() for _ in range(spare)]  # push the next descriptor past 9
    server = socket.create_server(("127.0.0.1", 0))
    fd = os.dup(server.fileno())
    try:
        argv = with_listen_fds(
            ("sh", "-c", 'echo "$LISTEN_FDS $LISTEN_PID $$"; readlink /proc/self/fd/3'), fd
        )
        result = subprocess.run(argv, pass_fds=(fd,), capture_output=True, text=True, check=True)
    finally:
        os.close(fd)
        server.close()
        for sock in padding:
            sock.close()
    fds, listen_pid, pid = result.stdout.splitlines()[0].split()
    assert fds == "1"
    assert listen_pid == pid
    assert result.stdout.splitlines()[1].startswith("socket:")


def test_the_verb_is_found_past_the_options_before_it() -> None:
    from supervisor.arguments import verb_of

    assert verb_of(["status"]) == "status"
    assert verb_of(["-c", "status", "restart", "x"]) == "restart"  # -c takes a value
    assert verb_of(["--config=a.toml", "set", "alpha"]) == "set"
    assert verb_of(["-f", "Procfile", "-e", "x.env", "run", "web"]) == "run"
    assert verb_of(["--version"]) is None
    assert verb_of(["statsu"]) is None  # unknown: every verb is built, for the error


def test_the_parser_of_one_verb_parses_as_the_whole_one() -> None:
    from supervisor.arguments import VERBS, build_parser

    whole = build_parser()
    sub = next(a for a in whole._actions if a.dest == "command")
    assert set(sub.choices) == VERBS  # type: ignore[arg-type]
    for argv in (
        ["-c", "s.toml", "status", "--json", "alpha/trade"],
        ["set", "alpha", "A=1", "--unset", "B", "--timeout", "3"],
        ["logs", "-f", "-n", "5", "--grep", "x"],
        ["export", "systemd", "-o", "out"],
        ["wait", "--file", "f", "--timeout", "0"],
    ):
        assert vars(build_parser(argv).parse_args(argv)) == vars(whole.parse_args(argv))


@pytest.mark.parametrize("text", ["alpha", "alpha/trade", "a b", "x/../y", "é", "a?b#c", "%2F", ""])
def test_the_client_quotes_url_paths_as_urllib_does(text: str) -> None:
    from urllib.parse import quote as urllib_quote

    from supervisor.client import quote

    assert quote(text) == urllib_quote(text)
    assert quote(text, safe="") == urllib_quote(text, safe="")


_WORDS = [
    *("status", "set", "restart", "start", "stop", "drop", "why", "logs", "launch", "run"),
    *("-c", "--config", "-f", "--procfile", "-e", "--env", "--conf", "--config=x.toml"),
    *("--json", "--watch", "--timeout", "--unset", "--no-wait", "--no-rollback", "--no"),
    *("-h", "--help", "--version", "--", "-", "", "-x", "-5", "3", "1e3", "nan", "inf", "0", "abc"),
    *("alpha", "alpha/trade", "s.toml", "A=1", "B=", "=x", "K=a b", "é=ü", "SIGNATURE=x/.."),
    *("--model", "--log-format", "text", "json", "xml", "--exit-on-end", "web"),
]


_ARGV = st.one_of(
    st.lists(st.sampled_from(_WORDS), max_size=7),
    st.builds(  # mostly a verb with words after it: the shapes the fast path takes
        lambda before, verb, after: [*before, verb, *after],
        st.lists(st.sampled_from(["-c", "s.toml", "-f", "-e", "x.env"]), max_size=2),
        st.sampled_from(["status", "set", "restart", "start", "stop", "drop", "why", "run"]),
        st.lists(st.sampled_from(_WORDS), max_size=5),
    ),
)


@given(_ARGV)
@settings(max_examples=3000, deadline=None)
def test_the_quick_parser_builds_what_argparse_builds_or_leaves_it_to_argparse(
    argv: list[str],
) -> None:
    """The fast path for everyday client commands never parses a command line otherwise
    than argparse: the same namespace, or None (argparse then parses it)."""
    from supervisor.arguments import build_parser
    from supervisor.quickargs import parse

    quick = parse(argv)
    if quick is None:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            expected = build_parser(argv).parse_args(argv)
        except SystemExit:
            pytest.fail(f"quick parser accepted {argv!r}, argparse refuses it: {quick!r}")
    assert vars(quick) == vars(expected), argv


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "alpha/trade", "--json"],
        ["-c", "s.toml", "restart", "alpha"],
        ["set", "alpha", "A=1", "B=2", "--unset", "C", "--unset", "D", "--timeout", "2.5"],
        ["start", "alpha", "-c", "s.toml", "--timeout", "0.5"],
        ["stop", "alpha/trade"],
        ["drop", "beta"],
        ["why", "math"],
        ["run"],
        ["-f", "Procfile", "run", "web", "worker", "-e", "a.env", "--exit-on-end"],
        ["run", "--model", "alpha", "--model", "beta", "--log-format", "json", "-c", "s.toml"],
    ],
)
def test_the_everyday_client_commands_take_the_quick_path(argv: list[str]) -> None:
    from supervisor.arguments import build_parser
    from supervisor.quickargs import parse

    quick = parse(argv)
    assert quick is not None
    assert vars(quick) == vars(build_parser(argv).parse_args(argv))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
@settings(max_examples=500, deadline=None)
def test_the_clients_json_is_the_json_module(value: object) -> None:
    import json

    from supervisor import jsonwire

    text = json.dumps(value)
    assert jsonwire.dumps(value) == text
    assert jsonwire.loads(text) == value
    assert jsonwire.loads(f" \n{text}\t".encode()) == value


@pytest.mark.parametrize("text", ["", "[1,", '{"a": 1} x', "nul", "{'a': 1}", "[1] [2]"])
def test_a_malformed_answer_is_the_json_modules_error(text: str) -> None:
    import json

    from supervisor import jsonwire

    with pytest.raises(json.JSONDecodeError) as ours:
        jsonwire.loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_every_validated_model_has_a_plain_value_with_its_fields_and_defaults() -> None:
    """The runtime reads `supervisor.config.spec`; pydantic's models are only the
    validation. A field added to one and not the other, or a default changed in one,
    fails here."""
    import dataclasses

    from supervisor.config import model

    for validated, plain in model._SPECS.items():
        fields = {f.name: f for f in dataclasses.fields(plain)}
        assert list(fields) == list(validated.model_fields), plain.__name__
        for name, info in validated.model_fields.items():
            if info.is_required():
                assert fields[name].default is dataclasses.MISSING, (plain.__name__, name)
                continue
            factory = fields[name].default_factory
            default = factory() if factory is not dataclasses.MISSING else fields[name].default
            expected = model._plain(info.get_default(call_default_factory=True))
            assert default == expected, (plain.__name__, name)


def test_a_validated_stack_holds_only_plain_values() -> None:
    from supervisor.config.model import StackModel, to_spec
    from supervisor.config.spec import Liveness, Probe, Process, Settings, Stack

    stack = to_spec(
        StackModel.model_validate(
            {
                "models": {"alpha": {"SIGNATURE": 1}},
                "processes": {
                    "web": {
                        "command": ["serve"],
                        "port": "auto",
                        "ready": {"tcp": "${port}"},
                        "live": {"http": "http://127.0.0.1:${port}/"},
                    }
                },
            }
        )
    )
    assert type(stack) is Stack and type(stack.supervise) is Settings
    web = stack.processes["web"]
    assert type(web) is Process and type(web.ready) is Probe and type(web.live) is Liveness
    assert stack.models == {"alpha": {"SIGNATURE": "1"}}
    assert web.ready.kind == "tcp" and web.live.kind == "http"


NESTED_REPEATS = [r"(a+)+$", r"(a*)*", r"^up (\w+\s?)+$", r"(x+x+)+y", r"(?:(a+))+", r"(\w+|\s+)+"]
NESTED_REPEATS += [r"foo(bar(a+)*)+", r"(.*)*", r"(?=(a+)+)x", r"(a+){2,}"]
LINEAR_ENOUGH = [r"^listening", r".*up.*", r"(\d+\.)+\d+", r"(\w+\s)+", r"(a++)+", r"(?>a+)+"]
LINEAR_ENOUGH += [r"(a|b)+", r"(ab|cd)+", r"(?:x(a+))+", r"(a+){2,5}", r"Uvicorn running on"]


@pytest.mark.parametrize("pattern", NESTED_REPEATS)
def test_a_log_pattern_that_repeats_a_repetition_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="repeats a repetition") as caught:
        check_regex(pattern)
    assert f"'{pattern}'" in str(caught.value)


@pytest.mark.parametrize("pattern", LINEAR_ENOUGH)
def test_a_log_pattern_with_a_separator_or_no_backtracking_is_taken(pattern: str) -> None:
    check_regex(pattern)


def test_a_secret_key_set_or_published_is_masked_at_once_and_others_leave_the_mask_alone() -> None:
    keys = ModelKeys({"alpha": {"SIGNATURE": "alpha-v1", "API_KEY": "sk-file-1234"}})
    redactor = keys.redactor
    assert redactor.mask("key sk-file-1234") == "key ***"
    assert keys.change("alpha", {"OPENAI_API_KEY": "sk-api-56789"}) == ["OPENAI_API_KEY"]
    assert redactor.mask("sk-api-56789 and sk-file-1234") == "*** and ***"
    values = redactor.values
    assert keys.change("alpha", {"SIGNATURE": "alpha-v2"}) == ["SIGNATURE"]
    assert redactor.values == values  # no secret changed: the same values
    assert keys.publish("alpha", {"SESSION_TOKEN": "tok-abcdef"}) == ["SESSION_TOKEN"]
    assert redactor.mask("tok-abcdef") == "***"
    assert keys.change("alpha", {}, unset=["OPENAI_API_KEY"]) == ["OPENAI_API_KEY"]
    assert redactor.mask("sk-api-56789") == "sk-api-56789"  # no longer a known secret


def _read_in(chunks: list[bytes], redactor: Redactor | None) -> list[str]:
    """Lines as a unit's pipe delivers them, `chunks` one read each."""
    lines: list[str] = []
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        split_lines(buffer, lines.append, 100, redactor)
    split_lines(buffer, lines.append, 100, redactor, final=True)
    return lines


def test_a_secret_that_arrives_across_two_reads_of_a_long_unfinished_line_is_masked() -> None:
    redactor = Redactor()
    redactor.update([("API_KEY", "sk-live-0123456789")])
    lines = _read_in([b"x" * 95 + b"sk-live-01", b"23456789" + b"y" * 10, b"\n"], redactor)
    assert "".join(lines) == "x" * 95 + "***" + "y" * 10
    assert all(len(line) <= 100 for line in lines)
    assert not any("0123" in line or "6789" in line for line in lines)


def test_long_lines_are_cut_between_utf8_characters_and_an_unfinished_one_at_the_end() -> None:
    lines = _read_in(["é".encode() * 120 + b"\nshort\n", b"z" * 250], None)
    assert lines == ["é" * 50, "é" * 50, "é" * 20, "short", "z" * 100, "z" * 100, "z" * 50]

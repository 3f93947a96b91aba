"""A property-based fuzz of the stack loader: however hostile the file, loading and
checking it either succeeds or raises one ConfigError naming the file — never another
exception (which `supervise check`, `run` and `reload` would show as a traceback or an
"internal error"). In-process: the loader is pure apart from reading the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.check import load_checked
from supervisor.config.model import ProcessModel, SettingsModel
from supervisor.errors import ConfigError

PROCESS_KEYS = sorted(ProcessModel.model_fields)
SETTING_KEYS = sorted(SettingsModel.model_fields)
PROBE_KEYS = ["tcp", "http", "exec", "log", "notify", "interval", "timeout", "within"]
NASTY = [
    "${",
    "${port}",
    "${model.KEY}",
    "${x:-y}",
    "$$",
    '"',
    "'",
    "\\",
    "\n",
    "a\n",
    "\x00",
    "..",
    "/",
    "((((",
    "[",
    "*",
    "é",
    "а",  # Cyrillic a, looks like a Latin one
    "SIGNATURE",
    "python -m x",
    "auto",
    "alpha",
    "init",
    "completed",
    "ready",
]

words = st.one_of(
    st.sampled_from(NASTY),
    st.lists(st.sampled_from(NASTY), min_size=2, max_size=4).map(" ".join),
    st.text(max_size=12),
)
scalars = st.one_of(
    words,
    st.integers(min_value=-(2**40), max_value=2**40),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(words, inner, max_size=4)),
    max_leaves=12,
)
names = st.one_of(st.sampled_from(["alpha", "beta", "init", "web", "a\n", "..", "а"]), words)
env_keys = st.one_of(st.sampled_from(["A", "SIGNATURE", "PORT", "1BAD", "A\n"]), words)
# Mostly well-typed values with hostile contents, so that most files get past the shape
# checks and reach templates, splitting, rendering and the plan.
probes = st.one_of(
    st.fixed_dictionaries({"tcp": words}),
    st.fixed_dictionaries({"http": words}),
    st.fixed_dictionaries({"exec": st.one_of(words, st.lists(words, max_size=3))}),
    st.fixed_dictionaries({"log": words}),
    st.dictionaries(st.sampled_from(PROBE_KEYS), values, max_size=3),
)
processes = st.fixed_dictionaries(
    {"command": st.one_of(words, st.lists(words, min_size=1, max_size=3))},
    optional={
        "per_model": st.booleans(),
        "oneshot": st.booleans(),
        "shell": st.booleans(),
        "port": st.one_of(st.just("auto"), st.integers(0, 70000), words),
        "inject": st.lists(env_keys, max_size=3),
        "publishes": st.lists(env_keys, max_size=2),
        "depends_on": st.dictionaries(
            names, st.sampled_from(["started", "ready", "completed", "bogus"]), max_size=2
        ),
        "ready": probes,
        "env": st.dictionaries(env_keys, words, max_size=3),
        "cwd": words,
        "stop_signal": st.one_of(st.sampled_from(["SIGTERM", "INT", "SIGFOO"]), words),
        "preload": st.lists(words, max_size=2),
        "restart": st.one_of(st.sampled_from(["always", "never"]), words),
        "socket": st.booleans(),
        "required": st.booleans(),
    },
)
# ... and now and then a key of any type, or an unknown one.
processes = st.tuples(
    processes, st.dictionaries(st.sampled_from([*PROCESS_KEYS, "colour"]), values, max_size=1)
).map(lambda pair: {**pair[0], **pair[1]})
documents = st.fixed_dictionaries(
    {},
    optional={
        "supervise": st.dictionaries(st.sampled_from(SETTING_KEYS), values, max_size=4),
        "env": st.dictionaries(env_keys, words, max_size=4),
        "models": st.dictionaries(names, st.dictionaries(env_keys, words, max_size=4), max_size=3),
        "processes": st.dictionaries(names, processes, max_size=4),
    },
)

# Plausible stacks: every structural field valid, hostile text only where text goes
# (commands, cwd, environment values, probe targets, model values, settings strings),
# so that examples reach interpolation, splitting, rendering and the plan.
POOL = ["init", "web", "agent"]
plausible_process = st.fixed_dictionaries(
    {"command": st.one_of(words, st.lists(words, min_size=1, max_size=3))},
    optional={
        "per_model": st.booleans(),
        "shell": st.booleans(),
        "port": st.sampled_from(["auto", 8080]),
        "inject": st.lists(st.sampled_from(["SIGNATURE", "K"]), max_size=2, unique=True),
        "depends_on": st.dictionaries(
            st.sampled_from(POOL), st.sampled_from(["started", "ready"]), max_size=1
        ),
        "ready": st.one_of(
            st.fixed_dictionaries({"tcp": words}),
            st.fixed_dictionaries({"http": words}),
            st.fixed_dictionaries({"exec": st.one_of(words, st.lists(words, max_size=3))}),
            st.fixed_dictionaries({"log": words}),
        ),
        "env": st.dictionaries(st.sampled_from(["A", "B"]), words, max_size=2),
        "cwd": words,
    },
)
plausible = st.fixed_dictionaries(
    {
        "processes": st.dictionaries(st.sampled_from(POOL), plausible_process, min_size=1),
    },
    optional={
        "supervise": st.fixed_dictionaries(
            {}, optional={"http": words, "control_socket": words, "env_files": st.just([])}
        ),
        "env": st.dictionaries(st.sampled_from(["A", "C"]), words, max_size=2),
        "models": st.dictionaries(
            st.sampled_from(["alpha", "beta"]),
            st.dictionaries(st.sampled_from(["SIGNATURE", "K"]), words, max_size=2),
            max_size=2,
        ),
    },
)


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_value(value: object) -> str:
    """A TOML value (inline); JSON's string escapes are TOML's basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(document: dict[str, Any]) -> str:
    lines = []
    for table, content in document.items():
        if isinstance(content, dict) and all(isinstance(v, dict) for v in content.values()):
            for name, sub in content.items():
                lines.append(f"[{toml_key(table)}.{toml_key(name)}]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in sub.items()]
        else:
            lines.append(f"{toml_key(table)} = {toml_value(content)}")
    return "\n".join(lines) + "\n"


SEED = (Path(__file__).resolve().parent.parent / "supervise.toml").read_text()


def loads_or_config_error(path: Path) -> None:
    try:
        load_checked(path, {"HOME": "/home/x", "PATH": os.defpath})
    except ConfigError as exc:
        problems = exc.problems
        assert problems, "a ConfigError names at least one problem"


FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples in every run: CI never flakes on a new one
    database=None,
)


@FUZZ
@given(document=documents)
def test_any_generated_stack_loads_or_is_a_config_error(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    path = tmp_path / "supervise.toml"
    path.write_text(to_toml(document))
    loads_or_config_error(path)


@FUZZ
@given(document=plausible)
def test_any_plausible_stack_with_hostile_text_loads_or_is_a_config_error(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    path = tmp_path / "supervise.toml"
    path.write_text(to_toml(document))
    loads_or_config_error(path)


@FUZZ
@given(
    cuts=st.lists(
        st.tuples(st.integers(0, len(SEED)), st.integers(0, 40), st.sampled_from(NASTY)),
        min_size=1,
        max_size=4,
    )
)
def test_any_mangled_reference_stack_loads_or_is_a_config_error(
    tmp_path: Path, cuts: list[tuple[int, int, str]]
) -> None:
    text = SEED
    for start, length, insert in cuts:
        text = text[:start] + insert + text[start + length :]
    path = tmp_path / "supervise.toml"
    path.write_text(text)
    loads_or_config_error(path)


@FUZZ
@given(document=documents, tool=values)
def test_any_generated_pyproject_loads_or_is_a_config_error(
    tmp_path: Path, document: dict[str, Any], tool: object
) -> None:
    path = tmp_path / "pyproject.toml"
    table = {"tool": {"supervise": document}} if isinstance(tool, bool) else {"tool": tool}
    path.write_text('[project]\nname = "x"\n' + to_toml(table))
    loads_or_config_error(path)


# Files that once crashed the loader (found by this fuzz or by hand); kept as regressions.
PINNED = [
    ("unbalanced quote in command", "[processes.a]\ncommand = 'echo \"x'\n", "like a shell"),
    (
        "unbalanced quote in an exec probe",
        "[processes.a]\ncommand = 'x'\nready = { exec = 'test \"x' }\n",
        "like a shell",
    ),
    ("bad template in cwd", "[processes.a]\ncommand = 'x'\ncwd = '${'\n", "processes.a.cwd"),
    ("TOML nested 500 deep", "a = " + "[" * 500 + "]" * 500 + "\n", "nested deeper than"),
    ("TOML nested 20 deep", "a = " + "[" * 20 + "]" * 20 + "\n", "nested deeper than 16"),
    (
        "regex nested 900 deep",
        "[processes.a]\ncommand = 'x'\nready = { log = '" + "(" * 900 + ")" * 900 + "' }\n",
        "regular expression",
    ),
    ("newline in a model name", '[models."a\\n"]\nK = "v"\n', "model name 'a\\n' is invalid"),
    ("newline in a signature", '[models.a]\nSIGNATURE = "sig\\n"\n', "SIGNATURE 'sig\\n'"),
    ("newline in a process name", '[processes."w\\n"]\ncommand = "x"\n', "process name"),
    ("newline in an env key", '[env]\n"A\\n" = "x"\n', "'A\\n' is not an environment"),
    ("NUL in a model key value", '[models.a]\nK = "x\\u0000y"\n', "contains a NUL byte"),
    ("Cyrillic look-alike in a model name", '[models."аlpha"]\nK = "v"\n', "model name"),
]


@pytest.mark.parametrize(("what", "text", "message"), PINNED, ids=[p[0] for p in PINNED])
def test_pinned_hostile_stack_files_are_config_errors(
    tmp_path: Path, what: str, text: str, message: str
) -> None:
    path = tmp_path / "supervise.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_checked(path, {})
    assert message in str(info.value), (what, str(info.value))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tool = "str"\n[project]\nname = "x"\n', "tool: must be a table"),
        ('[project]\nname = "x"\n[tool]\nsupervise = 3\n', "tool.supervise: must be a table"),
    ],
)
def test_a_pyproject_whose_tool_is_not_a_table_is_a_config_error(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_checked(path, {})
    assert message in str(info.value)

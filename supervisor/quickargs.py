"""The plain command lines of the everyday client verbs, parsed without argparse.

`supervise status`, `restart UNIT`, `set MODEL K=V` and their siblings are what scripts
and agents run in loops; argparse (and `re`, which it imports) costs each of them ~10 ms
before the request is sent, and `supervise run` as much before its stack is read.
`parse` reads the common shapes of those command lines into the same namespace argparse
would build, and returns None for anything else (help,
version, an unknown or abbreviated option, `--`, a misplaced positional, a wrong count):
argparse then parses the command line, with its messages. The test suite checks, over
generated command lines, that every namespace built here equals argparse's.
"""

from __future__ import annotations

MAX_SECONDS = 86_400.0  # a day: the longest --timeout or --watch period taken (both parsers)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class Parsed:
    """What argparse.Namespace is to the code that reads it: attributes."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Parsed({self.__dict__!r})"


# verb: (positionals, their minimum and maximum count (None: any), the options' defaults)
# Options: a default of False is a flag; a list, an appending option; else it takes a value.
_VERBS: dict[str, tuple[tuple[str, ...], int, int | None, dict[str, object]]] = {
    "status": (("unit",), 0, 1, {"json": False, "watch": None}),
    "set": (
        ("model", "pairs"),
        1,
        None,
        {"unset": [], "no_wait": False, "no_rollback": False, "timeout": None},
    ),
    "restart": (("unit",), 1, 1, {"timeout": None}),
    "start": (("unit",), 1, 1, {"timeout": None}),
    "stop": (("unit",), 1, 1, {}),
    "drop": (("model",), 1, 1, {}),
    "why": (("unit",), 1, 1, {}),
    "run": (("processes",), 0, None, {"model": [], "log_format": None, "exit_on_end": False}),
}
_PROCFILE_VERBS = {"run"}  # they take honcho's -f FILE and -e FILE after the verb too
# The options of those verbs that this parser reads; `--watch` (an optional value) is
# left to argparse.
_FLAGS = {
    **{"--json": "json", "--no-wait": "no_wait", "--no-rollback": "no_rollback"},
    "--exit-on-end": "exit_on_end",
}
_VALUED = {"--timeout": "timeout", "--unset": "unset", "--model": "model"}
_VALUED |= {"--log-format": "log_format"}
_LOG_FORMATS = ("text", "json")
_STACK = ("-c", "--config")
_TOP_NAMES = {
    **{"-c": "config", "--config": "config", "-f": "procfile", "--procfile": "procfile"},
    **{"-e": "env", "--env": "env"},
}


def parse(argv: Sequence[str]) -> Parsed | None:
    """argparse's namespace for `argv`, or None to let argparse parse it."""
    top: dict[str, object] = {"config": None, "procfile": None, "env": None}
    words = list(argv)
    i = 0
    while i < len(words) and words[i] in _TOP_NAMES:  # `-c FILE` before the verb
        if i + 1 >= len(words) or words[i + 1].startswith("-"):
            return None
        top[_TOP_NAMES[words[i]]] = words[i + 1]
        i += 2
    if i >= len(words) or words[i] not in _VERBS:
        return None
    verb = words[i]
    names, least, most, defaults = _VERBS[verb]
    values: dict[str, object] = {
        k: (list(v) if isinstance(v, list) else v) for k, v in defaults.items()
    }
    positionals: list[str] = []
    options_seen = False
    rest = words[i + 1 :]
    j = 0
    while j < len(rest):
        word = rest[j]
        if not word.startswith("-") or word == "-":
            if options_seen:
                return None  # argparse's own rules for positionals after options
            positionals.append(word)
        else:
            options_seen = True
            if word in _STACK or (verb in _PROCFILE_VERBS and word in _TOP_NAMES):
                if j + 1 >= len(rest) or rest[j + 1].startswith("-"):
                    return None
                top[_TOP_NAMES[word]] = rest[j + 1]
                j += 1
            elif word in _FLAGS and _FLAGS[word] in values:
                values[_FLAGS[word]] = True
            elif word in _VALUED and _VALUED[word] in values:
                if j + 1 >= len(rest) or rest[j + 1].startswith("-"):
                    return None
                name, value = _VALUED[word], rest[j + 1]
                if name == "timeout":
                    try:
                        seconds = float(value)
                    except ValueError:
                        return None
                    if not 0 < seconds <= MAX_SECONDS:  # nan, inf, > a day: argparse says why
                        return None
                    values[name] = seconds
                elif name == "log_format":
                    if value not in _LOG_FORMATS:
                        return None
                    values[name] = value
                else:
                    values[name].append(value)  # type: ignore[attr-defined]
                j += 1
            else:
                return None
        j += 1
    if len(positionals) < least or (most is not None and len(positionals) > most):
        return None
    if len(names) == 1 and most is None:  # `run PROCESS...`
        values[names[0]] = positionals
    elif most is None:  # the last positional takes the rest (`set MODEL KEY=VALUE...`)
        values[names[0]] = positionals[0]
        values[names[1]] = positionals[1:]
    else:
        values[names[0]] = positionals[0] if positionals else None
    return Parsed(command=verb, **top, **values)

"""How a unit's command runs on a target: behind `supervise exec` when something must
happen at exec time (keys, hand-off files, publishing, readiness markers), as it is
otherwise. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from supervisor.export.common import ExportUnit


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def shim_argv(
    unit: ExportUnit,
    *,
    supervise: str = "supervise",
    key_files: Iterable[str] = (),
    handoff: Callable[[str], str],
    marker: str | None = None,
    native_notify: bool = False,
) -> list[str]:
    """The unit's command behind `supervise exec` when it needs the shim, else as it is.

    Args:
        unit: the unit.
        supervise: how the target names the supervise executable.
        key_files: static key files the target mounts for the unit's model.
        handoff: a publishing process's name → its hand-off file on the target.
        marker: where a log/notify readiness marker goes (None: the target has none).
        native_notify: the target reads READY=1 itself (systemd): notify needs no shim,
            and a log probe is turned into READY=1.
    """
    flags: list[str] = []
    for file in key_files:
        flags += ["--env-file", file]
    for process in unit.handoffs:
        flags += ["--wait-file", handoff(process)]
    if unit.inject:
        flags += ["--inject", ",".join(unit.inject)]
    if unit.oneshot and unit.model is not None and unit.spec.publishes:
        flags += ["--publish-to", handoff(unit.process)]
    probe = unit.probe
    if probe is not None and probe.kind == "log":
        flags += ["--ready-log", probe.target[0]]
        if not native_notify and marker is not None:
            flags += ["--ready-file", marker]
    elif probe is not None and probe.kind == "notify" and not native_notify:
        flags += ["--ready-notify"] + (["--ready-file", marker] if marker else [])
    if not flags:
        return list(unit.argv)
    return [supervise, "exec", *flags, "--", *unit.argv]

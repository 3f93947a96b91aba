"""Who is on the other end of the control socket, from its peer credentials.

Failing closed: a caller is an operator only with positive proof that it is outside this
supervisor's tree. A unit is recognised by its leader among the caller's ancestors; a
caller whose ancestry reaches the supervisor or one of its helpers (an orphan it
adopted, a zygote's child), or that carries a unit marker without that ancestry, or that
is gone before it could be looked at, is a member of the stack without a model: it may
read status only.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.control.plane import Membership, UnitView
from supervisor.osproc import procfs

MAX_ANCESTRY = 4096  # a parent chain longer than this is not a real one


@dataclass(frozen=True)
class Caller:
    pid: int | None
    unit: UnitView | None
    stack_member: bool

    @property
    def operator(self) -> bool:
        return self.unit is None and not self.stack_member

    @property
    def model(self) -> str | None:
        return self.unit.model if self.unit is not None else None

    def describe(self) -> str:
        if self.unit is not None:
            return f"a process of unit {self.unit.name} (pid {self.pid})"
        return f"pid {self.pid}, a process of this stack not proven to belong to a unit"


def identify(membership: Membership, pid: int | None) -> Caller:
    if pid is None:
        return Caller(None, None, True)
    chain: list[int] = []
    current = procfs.read_stat(pid)
    if current is None:
        return Caller(pid, None, True)
    while current is not None and len(chain) < MAX_ANCESTRY:
        chain.append(current.pid)
        if current.ppid <= 1:
            break
        current = procfs.read_stat(current.ppid)
    for link in chain:
        if link in membership.leaders:
            return Caller(pid, membership.leaders[link], True)
        if link in membership.helpers:
            return Caller(pid, None, True)
    entry = procfs.environ_entry(pid, b"SUPERVISE_ENV")
    if entry is not None and entry.startswith(membership.marker_prefix):
        return Caller(pid, None, True)
    if procfs.read_stat(pid) is None:  # gone meanwhile: its pid may be someone else's
        return Caller(pid, None, True)
    return Caller(pid, None, False)

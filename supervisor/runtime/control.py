"""Live config: exact restarts on change, reload, launch/drop, per-unit control."""

from __future__ import annotations

from supervisor.runtime.supervisor import Supervisor


class LiveSupervisor(Supervisor):
    pass

"""CPU time and memory of process trees, for `status` and `/metrics`: one pass over
/proc (the same reader the tree kill uses), then sums per unit tree."""

from __future__ import annotations

import os

from supervisor.osproc import procfs

Table = dict[int, tuple[int, float, int]]  # pid → (ppid, cpu seconds, rss bytes)
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_table() -> Table:
    return {
        pid: (proc.ppid, proc.cpu_ticks / _TICKS, proc.rss_pages * _PAGE)
        for pid, proc in procfs.proc_table().items()
    }


class TreeUsage:
    """CPU seconds and RSS summed over a leader and its descendants."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            self.children.setdefault(ppid, []).append(pid)

    def of(self, leader: int) -> tuple[float, int]:
        cpu, rss, todo = 0.0, 0, [leader]
        while todo:
            pid = todo.pop()
            if pid in self.table:
                cpu += self.table[pid][1]
                rss += self.table[pid][2]
            todo.extend(self.children.get(pid, ()))
        return round(cpu, 2), rss

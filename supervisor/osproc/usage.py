"""CPU time and memory of process trees, for `status`: one pass over every process
(psutil), then sums per unit tree."""

from __future__ import annotations

import psutil

Table = dict[int, tuple[int, float, int]]  # pid → (ppid, cpu seconds, rss bytes)


def process_table() -> Table:
    table = {}
    for proc in psutil.process_iter(["ppid", "cpu_times", "memory_info"]):
        info = proc.info
        if info["cpu_times"] is None or info["memory_info"] is None:
            continue
        times = info["cpu_times"]
        table[proc.pid] = (info["ppid"], times.user + times.system, info["memory_info"].rss)
    return table


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

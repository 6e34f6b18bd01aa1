"""A serving locker's status, as one dict: itself, its clients, who holds and waits, its figures.

Built from the server core on request (``protocol.Status``) and shared by the command
line (``pylocker status``, ``pylocker top``), ``ServerLocker.server_status()`` and the
metrics endpoint. Lists are bounded (``MAX_ROWS``), the busiest first; ``truncated``
says when some were left out.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Final

from .holds import MODE_NAMES, kind_of
from .stats import NameStats

if TYPE_CHECKING:
    from .server_core import ServerCore

MAX_ROWS: Final = 1000  # clients, or names, described at most
_NO_FIGURES: Final = NameStats().summary()  # a client nothing has happened to yet


def _shown_names(summary: dict[str, Any]) -> dict[str, Any]:
    """Per-name figures keyed as users know the names ("semaphore:api", not the table's)."""
    shown = {}
    for name, figures in summary["names"].items():
        kind, plain = kind_of(name)
        shown[plain if kind == "lock" else f"{kind}:{plain}"] = figures
    summary["names"] = shown
    return summary


def build_status(core: ServerCore, now: float, busiest: int = 20) -> dict[str, Any]:
    """Everything ``pylocker status`` shows, as of ``now`` (the core's clock)."""
    table = core.table
    clients = core.clients()
    who: dict[Hashable, str] = {peer: info.unique_name for peer, info in clients.items()}
    who[b""] = core.unique_name
    holds: dict[str, int] = {}
    waits: dict[str, int] = {}
    names: list[dict[str, Any]] = []
    for name in table.names_in_use():
        holders: list[dict[str, Any]] = [{"unique_name": who.get(held.owner, "?"), "mode": MODE_NAMES[held.claim.mode],
                    "held_for": max(0.0, now - held.granted_at), "token": held.token}
                   for held in table.holders(name)]
        waiters: list[dict[str, Any]] = [
            {"unique_name": who.get(request.owner, "?"), "mode": MODE_NAMES[request.claim.mode],
             "waiting_for": max(0.0, now - core.asked_at(request.lock_id, now))}
            for request in table.waiting(name)]
        for row in holders:
            holds[row["unique_name"]] = holds.get(row["unique_name"], 0) + 1
        for row in waiters:
            waits[row["unique_name"]] = waits.get(row["unique_name"], 0) + 1
        kind, shown = kind_of(name)
        names.append({"name": shown, "kind": kind, "holders": holders, "waiters": waiters})
    names.sort(key=lambda row: (len(row["waiters"]), len(row["holders"])), reverse=True)
    counts = core.stats.owners
    rows: list[dict[str, Any]] = [{"unique_name": info.unique_name, "name": info.name, "pid": info.pid,
             "holds": holds.get(info.unique_name, 0), "waits": waits.get(info.unique_name, 0),
             **(counts[peer].summary() if peer in counts else _NO_FIGURES)}
            for peer, info in clients.items()]
    rows.sort(key=lambda row: (row["holds"] + row["waits"], row["unique_name"]), reverse=True)
    stats = core.stats
    return {
        "server": {"name": core.name, "unique_name": core.unique_name, "epoch": core.epoch,
                   "uptime": now - stats.started_at, "recovering": core.recovering,
                   "max_lock_time": table.max_lock_time, "lease": table.lease, "last_token": table.last_token,
                   "clients": len(clients), "held": len(table), "names_in_use": len(names),
                   "waiting": sum(len(row["waiters"]) for row in names),
                   "serving_locker_holds": holds.get(core.unique_name, 0)},
        "clients": rows[:MAX_ROWS],
        "locks": names[:MAX_ROWS],
        "stats": _shown_names(stats.summary(now, busiest)),
        "truncated": len(rows) > MAX_ROWS or len(names) > MAX_ROWS,
    }

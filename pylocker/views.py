"""Text views of a serving locker's status, for people: ``pylocker status`` and ``pylocker top``.

Both read the dict ``ServerLocker.server_status()`` returns (``status.py``); ``top``
compares two of them to show rates. Plain text, so that they work in any terminal
and in a log; ``top`` redraws with two ANSI sequences.
"""

from __future__ import annotations

from typing import Any

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


def human_duration(seconds: float | None) -> str:
    """3.2 s, 250 ms, 4 min 2 s, 2 h 5 min, 3 d 4 h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _label(row: dict[str, Any]) -> str:
    return row["name"] if row["kind"] == "lock" else f"{row['kind']}:{row['name']}"


def _short(unique_name: str, names: dict[str, str]) -> str:
    name = names.get(unique_name)
    return f"{name} ({unique_name[:8]})" if name else unique_name[:8]


def render_status(status: dict[str, Any], limit: int = 20) -> str:
    """The server, its clients, who holds what and who waits, in a few readable lines."""
    server, stats = status["server"], status["stats"]
    names = {row["unique_name"]: row["name"] for row in status["clients"]}
    names[server["unique_name"]] = server["name"] + " (serving)"
    lines = [
        f"serving locker {server['name']} ({server['unique_name'][:8]}), epoch {server['epoch']}, "
        f"up {human_duration(server['uptime'])}" + (", recovering from a failover" if server["recovering"] else ""),
        f"  lease {server['lease']} s, maxLockTime {server['max_lock_time']} s, last fencing token "
        f"{server['last_token']}",
        f"  {server['clients']} clients, {server['held']} locks held, {server['waiting']} requests waiting; "
        f"{stats['grants']} granted, {stats['timeouts']} timed out, {stats['expiries']} expired since it started",
    ]
    if status["locks"]:
        lines.append("held and waited for (busiest first):")
    for row in status["locks"][:limit]:
        holders = ", ".join(f"{_short(h['unique_name'], names)} {h['mode']} for {human_duration(h['held_for'])}"
                            for h in row["holders"]) or "nobody"
        lines.append(f"  {_label(row)}: held by {holders}")
        for waiter in row["waiters"][:5]:
            lines.append(f"      waiting: {_short(waiter['unique_name'], names)} ({waiter['mode']}) for "
                         f"{human_duration(waiter['waiting_for'])}")
        if len(row["waiters"]) > 5:
            lines.append(f"      ... and {len(row['waiters']) - 5} more waiting")
    if len(status["locks"]) > limit:
        lines.append(f"  ... and {len(status['locks']) - limit} more names")
    if status["clients"]:
        lines.append("clients:")
    for row in status["clients"][:limit]:
        lines.append(f"  {row['name']} ({row['unique_name'][:8]}, pid {row['pid']}): holds {row['holds']}, "
                     f"waits {row['waits']}; since it came: {row.get('acquires', 0)} granted, "
                     f"{row.get('timeouts', 0)} timed out, {row.get('expiries', 0)} expired")
    if status.get("truncated"):
        lines.append("(lists truncated)")
    return "\n".join(lines)


def render_top(status: dict[str, Any], previous: dict[str, Any] | None, interval: float, rows: int = 15) -> str:
    """One frame of ``pylocker top``: totals and rates, then the busiest names and the clients."""
    server, stats = status["server"], status["stats"]
    before = previous["stats"] if previous is not None else None

    def rate(key: str) -> str:
        if before is None or interval <= 0:
            return "-"
        return f"{(stats[key] - before[key]) / interval:,.1f}/s"

    lines = [
        f"pylocker top: {server['name']} epoch {server['epoch']}, up {human_duration(server['uptime'])}"
        + ("  RECOVERING" if server["recovering"] else ""),
        f"clients {server['clients']}  held {server['held']}  waiting {server['waiting']}  "
        f"grants {rate('grants')}  timeouts {rate('timeouts')}  messages {rate('publications')}",
        f"wait p50 {human_duration(stats['wait']['p50'])} p99 {human_duration(stats['wait']['p99'])}   "
        f"hold p50 {human_duration(stats['hold']['p50'])} p99 {human_duration(stats['hold']['p99'])}",
        "",
        f"{'NAME':<32} {'HOLDERS':>7} {'WAITERS':>7} {'ACQUIRES':>9} {'WAIT p99':>10} {'HOLD p99':>10}",
    ]
    current = {_label(row): row for row in status["locks"]}
    named = dict(stats["names"])
    for label in current:
        named.setdefault(label, None)
    order = sorted(named, key=lambda label: (len(current[label]["waiters"]) if label in current else 0,
                                             (named[label] or {}).get("acquires", 0)), reverse=True)
    for label in order[:rows]:
        row, figures = current.get(label), named[label] or {}
        lines.append(f"{label[:32]:<32} {len(row['holders']) if row else 0:>7} {len(row['waiters']) if row else 0:>7} "
                     f"{figures.get('acquires', 0):>9} "
                     f"{human_duration((figures.get('wait') or {}).get('p99')):>10} "
                     f"{human_duration((figures.get('hold') or {}).get('p99')):>10}")
    lines += ["", f"{'CLIENT':<32} {'PID':>7} {'HOLDS':>7} {'WAITS':>7}"]
    for client in status["clients"][:rows]:
        lines.append(f"{(client['name'] + ' ' + client['unique_name'][:8])[:32]:<32} {client['pid']:>7} "
                     f"{client['holds']:>7} {client['waits']:>7}")
    return "\n".join(lines)

"""From results to the Markdown table: figures side by side, ratios to the peer, verdicts for the checks."""

from __future__ import annotations

from typing import Any, Callable

DASH = "\u2013"  # what a cell shows for "no figure"


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _rate(v: float | None) -> str:
    return DASH if v is None else f"{v:,.0f}/s"


def _ms(v: float | None) -> str:
    return DASH if v is None else f"{v * 1000:,.0f} ms"


def _ratio(ours: float | None, peer: float | None, higher: bool = True) -> float | None:
    if not ours or not peer:
        return None
    return ours / peer if higher else peer / ours


def _fmt_ratio(v: float | None) -> str:
    return DASH if v is None else f"{v:.2f}"


def checks(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The correctness checks, for each peer measured: exclusion, semaphore bound, increasing tokens."""
    out: list[dict[str, Any]] = []
    for impl in ("ours", "kazoo"):
        peer = res.get(impl, {})
        mixed = _get(peer, "throughput", "mixed", "gauge")
        if mixed is not None:
            out.append({"impl": impl, "key": "exclusion", "measured": mixed["violations"],
                        "ok": mixed["violations"] == 0 and mixed["enters"] > 0})
        sem = _get(peer, "throughput", "semaphore")
        if sem is not None:
            held = sem["gauge"]["max_readers"]
            out.append({"impl": impl, "key": "semaphore", "measured": held,
                        "ok": sem["gauge"]["violations"] == 0 and 0 < held <= sem["limit"]})
        election = _get(peer, "election")
        if election is not None and "tokens" in election:
            out.append({"impl": impl, "key": "tokens", "measured": election["tokens"],
                        "ok": bool(election["tokens_increase"])})
    return out


def _cell(peer: dict[str, Any], section: str, fmt: Callable[[dict[str, Any]], str]) -> str:
    if "skipped" in peer:
        return "skipped"
    part = peer.get(section)
    if part is None:
        return "not run"
    if "error" in part:
        return "error"
    try:
        return fmt(part)
    except (KeyError, TypeError, IndexError):
        return "n/a"


def render_markdown(res: dict[str, Any]) -> str:
    meta, ours, kazoo = res["meta"], res.get("ours", {}), res.get("kazoo", {})
    p, k = meta["processes"], meta["limit"]
    verdicts: dict[str, list[str]] = {}
    for c in res.get("checks", []):
        verdicts.setdefault(c["key"], []).append(
            f"{'pylocker' if c['impl'] == 'ours' else 'kazoo'} **{'PASS' if c['ok'] else 'FAIL'}**")

    def rate(*path: str) -> Callable[[dict[str, Any]], str]:
        return lambda part: _rate(_get(part, *path))

    def both(*path: str) -> tuple[float | None, float | None]:
        return _get(ours, "throughput", *path), _get(kazoo, "throughput", *path)

    def mixed(part: dict[str, Any]) -> str:
        m = part["mixed"]
        return f"{_rate(m['reader']['ops_per_s'])} / {_rate(m['writer']['ops_per_s'])}"

    def mixed_total(peer: dict[str, Any]) -> float | None:
        m = _get(peer, "throughput", "mixed")
        return None if m is None or "reader" not in m else m["reader"]["ops_per_s"] + m["writer"]["ops_per_s"]

    def share_ratio(part: dict[str, Any]) -> str:
        shared = part["shared"]["shared"]["ops_per_s"]
        return (f"{shared / part['exclusive']['exclusive']['ops_per_s']:.2f}; "
                f"{shared / part['own']['own']['ops_per_s']:.2f}")

    def exclusion(part: dict[str, Any]) -> str:
        g = part["mixed"]["gauge"]
        return f"{g['violations']} violations; up to {g['max_readers']} readers at once"

    def semaphore(part: dict[str, Any]) -> str:
        g = part["semaphore"]["gauge"]
        return f"{g['max_readers']} at most ({g['violations']} violations)"

    def leader(part: dict[str, Any]) -> str:
        return f"{_ms(part['median_s'])} / {_ms(part['max_s'])} (min {_ms(part['min_s'])})"

    def bound(part: dict[str, Any]) -> str:
        s = part["session"]
        return (f"lease {s['lease_s']:g} s" if "lease_s" in s else f"session timeout {s['session_timeout_s']:g} s")

    def tokens(part: dict[str, Any]) -> str:
        t = part["tokens"]
        shown = " → ".join(str(x) for x in t) if len(t) <= 4 else f"{t[0]} → … → {t[-1]}"
        return f"{'yes' if part['tokens_increase'] else 'NO'} ({len(t)} leaders: {shown})"

    def failures(part: dict[str, Any]) -> str:
        phases = [part["shared"]["shared"], part["exclusive"]["exclusive"], part["own"]["own"],
                  part["mixed"]["reader"], part["mixed"]["writer"], part["semaphore"]["slot"]]
        return f"{sum(x['failures'] for x in phases)} / {sum(x['errors'] for x in phases)}"

    sh, ex, sem = both("shared", "shared", "ops_per_s"), both("exclusive", "exclusive", "ops_per_s"), \
        both("semaphore", "slot", "ops_per_s")
    own = both("own", "own", "ops_per_s")
    lead = (_get(ours, "election", "median_s"), _get(kazoo, "election", "median_s"))
    rows = [
        (f"Shared lock, {p} processes on one name: acquire+release/s (kazoo: ReadLock)",
         "throughput", rate("shared", "shared", "ops_per_s"), _ratio(*sh), "", ""),
        (f"Exclusive lock, {p} processes on one name: acquire+release/s (kazoo: WriteLock)",
         "throughput", rate("exclusive", "exclusive", "ops_per_s"), _ratio(*ex), "", ""),
        (f"Exclusive lock, {p} processes on a name each (nobody waits: a shared lock's ceiling)",
         "throughput", rate("own", "own", "ops_per_s"), _ratio(*own), "", ""),
        ("Shared ÷ exclusive on one name; shared ÷ a name each", "throughput", share_ratio, None, "", ""),
        (f"Mixed, {p} readers + 1 writer on one name: reader / writer acquire+release/s",
         "throughput", mixed, _ratio(mixed_total(ours), mixed_total(kazoo)), "", ""),
        ("Mixed: a writer overlapping a reader or a writer (shared-memory gauge)", "throughput", exclusion, None,
         "violations = 0", "<br>".join(verdicts.get("exclusion", []))),
        (f"Semaphore of {k}, {p} processes: slots acquired+released/s", "throughput",
         rate("semaphore", "slot", "ops_per_s"), _ratio(*sem), "", ""),
        (f"Semaphore of {k}: most holders at once (shared-memory gauge)", "throughput", semaphore, None,
         f"≤ {k}", "<br>".join(verdicts.get("semaphore", []))),
        (f"Acquire failures (not granted in {meta['acquire_timeout_s']:g} s) / errors, all phases above",
         "throughput", failures, None, "", ""),
        (f"Leader change after SIGKILL of the leader, kill → next campaign() return: median / max "
         f"over {meta['kills']} kills, {meta['candidates']} candidates", "election", leader,
         _ratio(*lead, higher=False), "", ""),
        ("Leader change: what bounds it", "election", bound, None, "", ""),
        ("Leader change: fencing tokens of successive leaders increase (kazoo: the lock znode's sequence)",
         "election", tokens, None, "strictly increasing", "<br>".join(verdicts.get("tokens", []))),
    ]
    lines = [
        "# Coordination benchmark",
        "",
        f"One run of `python benchmarks/bench_coordination.py{' --quick' if meta['quick'] else ''}` on "
        f"{meta['when']}: {meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, pyzmq "
        f"{meta['pyzmq']} (libzmq {meta['libzmq']}), load average before/after {meta['loadavg_before']} / "
        f"{meta.get('loadavg_after', '?')}; {meta['duration_s']:g} s per throughput figure (median of "
        f"{meta['slices']} slices); pylocker at {meta['git']}; run took {meta.get('total_s', '?')} s.",
        "",
        "| Figure | pylocker (this checkout) | kazoo + ZooKeeper | Ratio | Check | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    for text, section, fmt, ratio, check, verdict in rows:
        lines.append(f"| {text} | {_cell(ours, section, fmt)} | {_cell(kazoo, section, fmt)} | "
                     f"{_fmt_ratio(ratio)} | {check} | {verdict} |")
    lines += [
        "",
        "Ratio: pylocker ÷ kazoo for a throughput, kazoo ÷ pylocker for the leader change (≥ 1: pylocker "
        "does better). Verdicts are given for correctness checks only.",
        "",
        "## Setup",
        "",
    ]
    lines += [f"- {line}" for line in _setup(res)]
    return "\n".join(lines) + "\n"


def _setup(res: dict[str, Any]) -> list[str]:
    meta, ours, kazoo = res["meta"], res.get("ours", {}), res.get("kazoo", {})
    notes = [
        "Every process is started by the suite on 127.0.0.1, in a temp dir, and stopped by PID; each client "
        f"is its own process; the throughput clients ({meta['processes']} + 1 for the mixed phase's writer) "
        "connect and warm up once, then run each phase from one instant. The leader change starts "
        f"{meta['candidates']} + {meta['kills']} candidates up front; a spare joins the race before each kill.",
    ]
    if "skipped" in ours:
        notes.append(f"pylocker: **skipped**: {ours['skipped']}")
    else:
        notes.append(
            "pylocker: a serving `ServerLocker(password, serverFile=<tmp>, port=0)` in its own process; clients "
            "`allowServing=False, receive_messages=False`; loops `with L.lock(name, shared=...)` and "
            "`with L.semaphore(\"api\", k).acquire(timeout=...)`; candidates `L.election(\"job\").campaign()`. "
            f"Throughput: {_lease(ours, 'throughput')}; leader change: a serving locker of its own, with "
            f"{_lease(ours, 'election')} on it and on the candidates.")
    if "skipped" in kazoo:
        notes.append(f"kazoo + ZooKeeper: **skipped**: {kazoo['skipped']}")
    else:
        notes.append(
            f"kazoo + ZooKeeper: {kazoo.get('setup', '?')}; one KazooClient per process; `ReadLock`/`WriteLock`/"
            "`Semaphore` recipes reused across iterations, `acquire(timeout=...)`; candidates "
            "`Election(path).lock.acquire()` (what `Election.run` does). Throughput: "
            f"{_lease(kazoo, 'throughput')}; leader change: {_lease(kazoo, 'election')} (asked: the lease).")
    for impl, name in (("ours", "pylocker"), ("kazoo", "kazoo")):
        peer = res.get(impl, {})
        for section in ("throughput", "election"):
            part = peer.get(section, {})
            if isinstance(part, dict) and "error" in part:
                notes.append(f"{name} {section} failed: {part['error'].splitlines()[0]}")
        kills = _get(peer, "election", "kills")
        if kills:
            notes.append(f"{name} leader changes, each kill: "
                         + ", ".join(f"{k['latency_s'] * 1000:.0f} ms" for k in kills))
        first = [_get(peer, "throughput", *path, "first_error") for path in
                 (("shared", "shared"), ("exclusive", "exclusive"), ("own", "own"), ("mixed", "reader"),
                  ("mixed", "writer"),
                  ("semaphore", "slot"))]
        if any(first):
            notes.append(f"{name}: first error in the loops: {next(f for f in first if f)}")
    return notes


def _lease(peer: dict[str, Any], section: str) -> str:
    session = _get(peer, section, "session") or {}
    if "lease_s" in session:
        return f"lease {session['lease_s']:g} s"
    if session.get("session_timeout_s") is not None:
        return f"session timeout {session['session_timeout_s']:g} s (negotiated)"
    return "not measured"

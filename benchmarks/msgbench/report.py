"""From results to verdicts: the issue's goals and the Markdown tables."""

from __future__ import annotations

from typing import Any

from .common import BULK, FREEZE
from .suite import STREAMS

DASH = "\u2013"  # what a table cell shows for "no figure"
PEERS = [("pylocker", "pylocker"), ("floor", "credit floor (raw pyzmq)"), ("nats", "NATS core (nats-py)"),
         ("redis", "Redis pub/sub")]
HOW = {
    "pylocker": "serving locker, publisher and receivers in processes of their own; lossless (the default); "
                "receivers consume with pop_message (wait_message when empty), mailbox raised above the stream",
    "floor": "ROUTER publisher -> DEALER receivers, one frame per message, credit window 1,000 messages "
             "handed back 100 at a time; no encryption",
    "nats": "nats-py publish per message, subscriber callback, default limits; at most once",
    "redis": "PUBLISH pipelined 1,000 at a time, pubsub get_message; at most once",
}
LABELS = {"call": "per call", "bulk": f"bulk ({BULK:,}/call)"}


def figure(res: dict[str, Any], peer: str, key: str) -> tuple[dict[str, Any] | None, bool]:
    """``peer``'s figure for ``key`` and whether it is that exact figure.

    Peers without the variant stand in with their nearest: broadcast -> targeted (NATS and
    Redis route by subject: one figure for both), bulk -> per call (the floor and NATS
    have one send per message; nats-py batches its writes itself).
    """
    streams = res.get("peers", {}).get(peer, {}).get("streams", {})
    head, mode, _ = key.split("/")
    for candidate in (key, f"{head}/{mode}/targeted", f"{head}/call/targeted"):
        if candidate in streams:
            return streams[candidate], candidate == key
    return None, False


def _goodput(res: dict[str, Any], peer: str, key: str, exact: bool = False) -> float | None:
    found, is_exact = figure(res, peer, key)
    if found is None or (exact and not is_exact):
        return None
    return found.get("goodput")


def _lost(res: dict[str, Any], key: str) -> int | None:
    found, _ = figure(res, "pylocker", key)
    return None if found is None else int(found["lost"])


def evaluate_goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    goals: list[dict[str, Any]] = []

    def ratio_goal(text: str, key: str, peer: str, factor: float) -> None:
        ours, theirs = _goodput(res, "pylocker", key, exact=True), _goodput(res, peer, key)
        row: dict[str, Any] = {"goal": text, "key": key, "peer": peer, "ours": ours, "theirs": theirs,
                               "needed": factor, "ratio": None, "verdict": "SKIPPED"}
        if ours is not None and theirs:
            row["ratio"] = ours / theirs
            row["verdict"] = "PASS" if row["ratio"] >= factor else "FAIL"
        elif theirs is None:
            row["note"] = res.get("peers", {}).get(peer, {}).get("skipped", "no figure")
        goals.append(row)

    def zero_loss(text: str, keys: list[str]) -> None:
        losses = [_lost(res, key) for key in keys]
        row: dict[str, Any] = {"goal": text, "key": ", ".join(keys), "peer": "", "ours": None, "theirs": None,
                               "needed": 0, "ratio": None, "verdict": "SKIPPED"}
        if all(loss is not None for loss in losses):
            row["lost"] = sum(loss or 0 for loss in losses)
            row["verdict"] = "PASS" if row["lost"] == 0 else "FAIL"
        goals.append(row)

    zero_loss("1->1 per call: zero loss (targeted and broadcast)", ["1to1/call/targeted", "1to1/call/broadcast"])
    for target in ("targeted", "broadcast"):
        ratio_goal(f"1->1 per call, {target}: goodput >= 1.5 x NATS", f"1to1/call/{target}", "nats", 1.5)
        ratio_goal(f"1->1 per call, {target}: goodput >= 0.4 x credit floor", f"1to1/call/{target}", "floor", 0.4)
    for mode in ("call", "bulk"):
        for target in ("targeted", "broadcast"):
            ratio_goal(f"1->4 {LABELS[mode]}, {target}: per receiver >= 1.5 x NATS", f"1to4/{mode}/{target}",
                       "nats", 1.5)
    for mode in ("call", "bulk"):
        zero_loss(f"a receiver frozen {FREEZE:.0f} s loses nothing ({LABELS[mode]})", [f"frozen/{mode}/targeted"])
    every = [stream.key for stream in STREAMS["pylocker"]]
    zero_loss("lossless by default: no pylocker stream lost a message", every)
    return goals


def _num(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"


def _cell(res: dict[str, Any], peer: str, key: str) -> str:
    peer_res = res.get("peers", {}).get(peer, {})
    if "skipped" in peer_res:
        return "skipped"
    if "error" in peer_res:
        return "error"
    found, exact = figure(res, peer, key)
    if found is None or (peer == "pylocker" and not exact):  # ours: only the figure itself
        return DASH
    mark = "" if exact else " \u2020"
    return f"{_num(found['goodput'])}/s, lost {found['lost']:,}{mark}"


def _row_label(key: str) -> str:
    head, mode, target = key.split("/")
    if head == "frozen":
        return f"1->1, receiver frozen {FREEZE:.0f} s, {LABELS[mode]}"
    return f"{head.replace('to', '->')} {LABELS[mode]}, {target}"


def render_markdown(res: dict[str, Any], goals: list[dict[str, Any]]) -> str:
    meta = res["meta"]
    lines = [
        "# Message benchmark", "",
        f"`python benchmarks/bench_messages.py{' --quick' if meta['quick'] else ''}` on {meta['when']}: "
        f"{meta['cpus']} CPUs ({meta['cpu_model']}), load {meta['loadavg_before']} before, "
        f"{meta['loadavg_after']} after; Python {meta['python']}, pyzmq {meta['pyzmq']} (libzmq {meta['libzmq']}); "
        f"pylocker at {meta['git']}. Total {meta['total_s']} s.", "",
        f"{meta['count']:,} messages of {meta['payload']} bytes per stream. Goodput: messages a receiver got "
        "per second, first to last arrival (the mean per receiver for 1->4); lost: messages sent to it that it "
        "never got (the sum over receivers). Each receiver ends at the expected count or after "
        f"{meta['quiet']:.0f} s without a message.", "",
        "| figure | " + " | ".join(label for _, label in PEERS) + " |",
        "|---|" + "---:|" * len(PEERS),
    ]
    for key in [stream.key for stream in STREAMS["pylocker"]]:
        lines.append(f"| {_row_label(key)} | " + " | ".join(_cell(res, peer, key) for peer, _ in PEERS) + " |")
    lines += ["", "\u2020 the peer's nearest figure: NATS and Redis route by subject (one figure for targeted "
              "and broadcast); the floor and NATS send one message per call (nats-py batches its writes itself).", ""]
    lines += ["## Goals (issue 12)", "", "| goal | pylocker | peer | ours / peer | needed | verdict |",
              "|---|---:|---:|---:|---:|---|"]
    for g in goals:
        if g["peer"]:
            ratio = DASH if g["ratio"] is None else f"{g['ratio']:.2f}"
            lines.append(f"| {g['goal']} | {_num(g['ours'])}/s | {_num(g['theirs'])}/s | {ratio} | "
                         f"{g['needed']} | {g['verdict']} |")
        else:
            lost = g.get("lost")
            lines.append(f"| {g['goal']} | lost {DASH if lost is None else f'{lost:,}'} | | | 0 | {g['verdict']} |")
    lines += ["", "## Peers", ""]
    for peer, label in PEERS:
        info = res.get("peers", {}).get(peer, {})
        if "skipped" in info:
            note = f"skipped: {info['skipped']}"
        else:
            note = "; ".join(x for x in (HOW[peer], info.get("setup"), info.get("error") and f"error: {info['error']}")
                             if x)
        lines.append(f"- **{label}**: {note}")
    return "\n".join(lines) + "\n"

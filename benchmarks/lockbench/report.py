"""From results to verdicts and pictures: the goals, the Markdown table, the chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from .common import SEED_VERSION

DASH = "\u2013"  # what a table cell shows for "no figure"


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluate_goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals as (measured, target, ratio, verdict); ratio >= 1 passes."""
    ours, echo, redis_ = res.get("ours", {}), res.get("echo", {}), res.get("redis", {})
    scale = res.get("scale", {})
    goals: list[dict[str, Any]] = []

    def add(key: str, text: str, measured: float | None, target: float | None, higher: bool,
            unit: str, extra_ok: bool = True, note: str = "") -> None:
        if measured is None or target is None or target == 0:
            goals.append({"key": key, "goal": text, "measured": measured, "target": target, "unit": unit,
                          "ratio": None, "verdict": "SKIPPED", "note": note or "a figure is missing"})
            return
        ratio = measured / target if higher else (target / measured if measured else math.inf)
        verdict = "PASS" if ratio >= 1 and extra_ok else "FAIL"
        goals.append({"key": key, "goal": text, "measured": measured, "target": target, "unit": unit,
                      "ratio": ratio, "verdict": verdict, "note": note})

    floor = _get(echo, "remote", "ops_per_s")
    remote = _get(ours, "remote", "ops_per_s")
    add("remote_vs_echo", "remote client, uncontended >= 0.75 x echo floor", remote,
        0.75 * floor if floor else None, True, "ops/s")
    redis_remote = _get(redis_, "remote", "ops_per_s")
    add("remote_vs_redis", "remote client, uncontended >= 1.8 x python-redis-lock", remote,
        1.8 * redis_remote if redis_remote else None, True, "ops/s",
        note="" if redis_remote else f"redis skipped: {redis_.get('skipped', 'no figure')}")
    add("inproc", "serving locker in process >= 200,000 acquire+release/s",
        _get(ours, "inproc", "ops_per_s"), 200_000.0, True, "ops/s")
    floor4 = _get(echo, "four", "ops_per_s")
    add("four_names", "4 processes x 4 names >= 0.5 x 4-client echo floor",
        _get(ours, "four_names", "ops_per_s"), 0.5 * floor4 if floor4 else None, True, "ops/s")
    rtt = _get(echo, "remote", "rtt_p50")
    add("handover", "handover median <= 1.5 x one echo round trip",
        _get(ours, "one_name", "handover_p50"), 1.5 * rtt if rtt else None, False, "s")
    dev = _get(ours, "one_name", "max_deviation")
    counter_ok = bool(_get(ours, "one_name", "counter_ok"))
    add("fairness", "per-process counts within +-10% on one name (and the counter file adds up)",
        dev, 0.10, False, "fraction", extra_ok=counter_ok,
        note="" if counter_ok or dev is None else "counter file does not add up")
    add("blocked", "blocked waiter <= 1% of a core", _get(ours, "blocked", "core_pct"), 1.0, False, "%")
    full = scale.get("clients") == scale.get("clients_wanted") and scale.get("locks") == scale.get("locks_wanted")
    rss = scale.get("server_rss_end")
    add("scale_rss", f"{scale.get('clients_wanted', 1000):,} clients and {scale.get('locks_wanted', 100_000):,} "
        "locks with server RSS <= 200 MB", rss / 2**20 if rss else None, 200.0, False, "MB", extra_ok=full,
        note="" if full or rss is None else
        f"only {scale.get('clients')} clients / {scale.get('locks')} locks reached")
    return goals


def _fmt_rate(v: Any) -> str:
    return DASH if v is None else f"{v:,.0f}/s"


def _fmt_us(v: Any) -> str:
    return DASH if v is None else f"{v * 1e6:,.0f} µs"


def _cell(peer: dict[str, Any], fmt: Callable[[Any], str], *path: str) -> str:
    if "skipped" in peer:
        return "skipped"
    if "error" in peer:
        return "error"
    value = _get(peer, *path)
    return "n/a" if value is None else fmt(value)


def render_markdown(res: dict[str, Any], goals: list[dict[str, Any]]) -> str:
    meta = res["meta"]
    ours, echo = res.get("ours", {}), res.get("echo", {})
    seed, redis_, scale = res.get("seed", {}), res.get("redis", {}), res.get("scale", {})
    by_key = {g["key"]: g for g in goals}

    def verdict(*keys: str) -> tuple[str, str, str]:
        gs = [by_key[k] for k in keys if k in by_key]
        text = "<br>".join(g["goal"] for g in gs)
        ratio = "<br>".join(DASH if g["ratio"] is None else f"{g['ratio']:.2f}" for g in gs)
        ver = "<br>".join(f"**{g['verdict']}**" for g in gs)
        return text, ratio, ver

    def pct(v: Any) -> str:
        return f"{v:.2f} %"

    def counts(v: Any) -> str:
        return " / ".join(str(x) for x in v)

    def dev(v: Any) -> str:
        return f"±{100 * v:.1f} %"

    rows: list[tuple[str, str, str, str, str, str, tuple[str, str, str]]] = [
        ("Remote client, uncontended: acquire+release/s (echo: round trips/s)",
         _cell(ours, _fmt_rate, "remote", "ops_per_s"), _cell(echo, _fmt_rate, "remote", "ops_per_s"),
         _cell(echo, _fmt_rate, "curve_remote", "ops_per_s"), _cell(seed, _fmt_rate, "remote", "ops_per_s"),
         _cell(redis_, _fmt_rate, "remote", "ops_per_s"), verdict("remote_vs_echo", "remote_vs_redis")),
        ("Remote client, uncontended: acquire latency p50 / p99 (echo: round trip)",
         _cell(ours, _fmt_us, "remote", "acquire_p50") + " / " + _cell(ours, _fmt_us, "remote", "acquire_p99"),
         _cell(echo, _fmt_us, "remote", "rtt_p50") + " / " + _cell(echo, _fmt_us, "remote", "rtt_p99"),
         _cell(echo, _fmt_us, "curve_remote", "rtt_p50") + " / "
         + _cell(echo, _fmt_us, "curve_remote", "rtt_p99"),
         _cell(seed, _fmt_us, "remote", "acquire_p50") + " / " + _cell(seed, _fmt_us, "remote", "acquire_p99"),
         _cell(redis_, _fmt_us, "remote", "acquire_p50") + " / " + _cell(redis_, _fmt_us, "remote", "acquire_p99"),
         ("", "", "")),
        ("Serving locker in process: acquire+release/s",
         _cell(ours, _fmt_rate, "inproc", "ops_per_s"), "n/a", "n/a", _cell(seed, _fmt_rate, "inproc", "ops_per_s"),
         "n/a", verdict("inproc")),
        ("4 processes x 4 names: total acquire+release/s (echo: 4 clients)",
         _cell(ours, _fmt_rate, "four_names", "ops_per_s"), _cell(echo, _fmt_rate, "four", "ops_per_s"), DASH,
         _cell(seed, _fmt_rate, "four_names", "ops_per_s"), _cell(redis_, _fmt_rate, "four_names", "ops_per_s"),
         verdict("four_names")),
        ("4 processes x 1 name: total acquire+release/s",
         _cell(ours, _fmt_rate, "one_name", "ops_per_s"), "n/a", "n/a",
         _cell(seed, _fmt_rate, "one_name", "ops_per_s"), _cell(redis_, _fmt_rate, "one_name", "ops_per_s"),
         ("", "", "")),
        ("4 processes x 1 name: per-process counts",
         _cell(ours, counts, "one_name", "per_process"), "n/a", "n/a",
         _cell(seed, counts, "one_name", "per_process"), _cell(redis_, counts, "one_name", "per_process"),
         ("", "", "")),
        ("4 processes x 1 name: largest deviation from the mean count; counter file",
         _cell(ours, dev, "one_name", "max_deviation") + "; " + _cell(ours, str, "one_name", "counter_ok"), "n/a",
         "n/a", _cell(seed, dev, "one_name", "max_deviation") + "; " + _cell(seed, str, "one_name", "counter_ok"),
         _cell(redis_, dev, "one_name", "max_deviation") + "; " + _cell(redis_, str, "one_name", "counter_ok"),
         verdict("fairness")),
        ("Handover, release to next holder: median / p99 (echo: one round trip)",
         _cell(ours, _fmt_us, "one_name", "handover_p50") + " / " + _cell(ours, _fmt_us, "one_name", "handover_p99"),
         _cell(echo, _fmt_us, "remote", "rtt_p50"), _cell(echo, _fmt_us, "curve_remote", "rtt_p50"),
         _cell(seed, _fmt_us, "one_name", "handover_p50") + " / " + _cell(seed, _fmt_us, "one_name", "handover_p99"),
         _cell(redis_, _fmt_us, "one_name", "handover_p50") + " / "
         + _cell(redis_, _fmt_us, "one_name", "handover_p99"), verdict("handover")),
        (f"CPU of a waiter blocked for {meta['block_s']:g} s (% of one core)",
         _cell(ours, pct, "blocked", "core_pct"), "n/a", "n/a", _cell(seed, pct, "blocked", "core_pct"),
         _cell(redis_, pct, "blocked", "core_pct"), verdict("blocked")),
    ]
    if scale and "error" not in scale and "skipped" not in scale:
        mb = 2**20
        rows += [
            (f"Scale: clients connected (of {scale['clients_wanted']:,}) in one load-generator process; "
             f"locks held (of {scale['locks_wanted']:,})",
             f"{scale['clients']:,} in {scale['open_s']:.1f} s; {scale['locks']:,} in {scale['lock_s']:.1f} s "
             f"(load generator: {scale['threads']:,} threads, {scale['loadgen_rss'] / mb:.0f} MB)",
             "n/a", "n/a", "not run", "not run", ("", "", "")),
            ("Scale: server resident memory idle / clients connected / locks held / end",
             f"{scale['server_rss_idle'] / mb:.0f} / {scale['server_rss_connected'] / mb:.0f} / "
             f"{scale['server_rss_loaded'] / mb:.0f} / {scale['server_rss_end'] / mb:.0f} MB",
             "n/a", "n/a", "not run", "not run", verdict("scale_rss")),
            ("Scale: probe acquire latency p50 / p99 under load (plus churn from 2 clients)",
             f"{_fmt_us(scale['probe_acquire_p50'])} / {_fmt_us(scale['probe_acquire_p99'])} "
             f"({scale['probe_ops_per_s']:,.0f}/s probe, {scale['churn_ops_per_s']:,.0f}/s churn, "
             f"server CPU {scale['server_cpu_pct_under_load']:.0f} %)", "n/a", "n/a", "not run", "not run",
             ("", "", "")),
        ]
    elif scale:
        rows.append(("Scale run", scale.get("error") or scale.get("skipped", ""), "n/a", "n/a", "not run",
                     "not run", verdict("scale_rss")))

    lines = [
        "# Lock benchmark",
        "",
        f"One run of `python benchmarks/bench_locks.py{' --quick' if meta['quick'] else ''}` on "
        f"{meta['when']}: {meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, "
        f"pyzmq {meta['pyzmq']} (libzmq {meta['libzmq']}), load average before/after "
        f"{meta['loadavg_before']} / {meta['loadavg_after']}; {meta['duration_s']:g} s per throughput figure; "
        f"pylocker at {meta['git']}.",
        "",
        "| Figure | pylocker (this checkout) | echo floor (raw) | echo (CURVE) | pylocker 3.1.0 | "
        "Redis + python-redis-lock | Goal | Ratio | Verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for figure, a, b, c, d, e, (goal, ratio, ver) in rows:
        lines.append(f"| {figure} | {a} | {b} | {c} | {d} | {e} | {goal} | {ratio} | {ver} |")
    lines += ["", "Ratio: measured ÷ target for a “≥” goal, target ÷ measured for a “≤” goal; ≥ 1 passes.", ""]
    lines += ["## Goals", "", "| Goal | Measured | Target | Ratio | Verdict | Note |", "|---|---|---|---|---|---|"]
    for g in goals:
        m, t = g["measured"], g["target"]
        unit = g["unit"]
        if unit == "s":
            ms, ts = _fmt_us(m), _fmt_us(t)
        elif unit == "fraction":
            ms = DASH if m is None else f"±{100 * m:.1f} %"
            ts = DASH if t is None else f"±{100 * t:.0f} %"
        elif unit == "ops/s":
            ms, ts = _fmt_rate(m), _fmt_rate(t)
        else:
            ms = DASH if m is None else f"{m:,.2f} {unit}"
            ts = DASH if t is None else f"{t:,.2f} {unit}"
        ratio = DASH if g["ratio"] is None else f"{g['ratio']:.2f}"
        lines.append(f"| {g['goal']} | {ms} | {ts} | {ratio} | **{g['verdict']}** | {g['note']} |")
    lines += ["", "## Peers", ""]
    for key, label in (("echo", "echo floor"), ("seed", f"pylocker {SEED_VERSION}"),
                       ("redis", "Redis + python-redis-lock"), ("scale", "scale run")):
        peer = res.get(key, {})
        status = ("skipped: " + peer["skipped"]) if "skipped" in peer else (
            "error: " + peer["error"].splitlines()[0]) if "error" in peer else peer.get("setup", "measured")
        lines.append(f"- {label}: {status}")
    lines += ["", "Notes: every figure is from one process per client on loopback. A throughput is the median "
              f"of {meta['slices']} equal time slices of the run, summed over its processes (a burst of outside "
              "load spoils one slice, not the figure; the mean and the best slice are in the JSON). Latencies are "
              "per call as "
              "seen by the caller (perf_counter); handover is the time from the holder's last instruction "
              "before release to the next holder's first after its grant, on the shared monotonic clock, "
              "counted only when the lock changes process. The machine is shared: figures vary run to run.",
              ""]
    if res.get("chart_note"):
        lines += [res["chart_note"], ""]
    return "\n".join(lines)


def render_chart(res: dict[str, Any], goals: list[dict[str, Any]], path: Path) -> str | None:
    """Write the PNG; returns a note when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "No chart: matplotlib is not installed (pip install matplotlib)."
    peers = [("ours", "pylocker (checkout)", "#1f77b4"), ("echo", "echo floor (raw)", "#7f7f7f"),
             ("seed", f"pylocker {SEED_VERSION}", "#ff7f0e"), ("redis", "Redis + redis-lock", "#d62728")]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    scenarios = ["remote, 1 client", "4 procs x 4 names", "4 procs x 1 name"]
    paths = {"echo": [("remote",), ("four",), None]}
    width = 0.2
    for i, (key, label, color) in enumerate(peers):
        values = [None if p is None else _get(res.get(key, {}), *p, "ops_per_s")
                  for p in paths.get(key, [("remote",), ("four_names",), ("one_name",)])]
        xs = [j + (i - 1.5) * width for j in range(len(scenarios))]
        ax.bar(xs, [v or 0 for v in values], width, label=label, color=color)
        for x, v in zip(xs, values):
            ax.text(x, (v or 0), DASH if v is None else f"{v / 1000:.1f}k", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("acquire+release per second (echo: round trips)")
    ax.set_title("Throughput")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    names, vals, colors = [], [], []
    for key, label, color in peers:
        v = _get(res.get(key, {}), "inproc", "ops_per_s")
        if v is not None:
            names.append(label)
            vals.append(v)
            colors.append(color)
    ax.bar(names, vals, color=colors)
    ax.axhline(200_000, color="green", linestyle="--", label="goal 200,000/s")
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_title("Serving locker, in process")
    ax.set_ylabel("acquire+release per second")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    names, p50, p99, colors = [], [], [], []
    for key, label, color in peers:
        if key == "echo":
            v = _get(res.get("echo", {}), "remote", "rtt_p50")
            w = _get(res.get("echo", {}), "remote", "rtt_p99")
        else:
            v = _get(res.get(key, {}), "one_name", "handover_p50")
            w = _get(res.get(key, {}), "one_name", "handover_p99")
        if v is not None:
            names.append(label if key != "echo" else "echo round trip")
            p50.append(v * 1e6)
            p99.append((w or v) * 1e6)
            colors.append(color)
    positions = range(len(names))
    ax.bar([x - 0.2 for x in positions], p50, 0.4, color=colors, label="median")
    ax.bar([x + 0.2 for x in positions], p99, 0.4, color=colors, alpha=0.45, label="p99")
    rtt = _get(res.get("echo", {}), "remote", "rtt_p50")
    if rtt:
        ax.axhline(1.5 * rtt * 1e6, color="green", linestyle="--", label="goal: 1.5 x echo round trip")
    ax.set_yscale("log")
    ax.set_xticks(list(positions), names, fontsize=8)
    ax.set_ylabel("µs (log)")
    ax.set_title("Handover: release to next holder (4 processes, 1 name)")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    shown = [g for g in goals if g["ratio"] is not None]
    labels = [g["key"] for g in shown]
    ratios = [min(g["ratio"], 10.0) for g in shown]
    ax.barh(labels, ratios, color=["#2ca02c" if g["verdict"] == "PASS" else "#d62728" for g in shown])
    ax.axvline(1.0, color="black", linestyle="--")
    for i, g in enumerate(shown):
        ax.text(ratios[i], i, f" {g['ratio']:.2f}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_title("Goals: measured vs target (>= 1 passes, capped at 10)")
    ax.invert_yaxis()
    fig.suptitle(f"pylocker lock benchmark ({res['meta']['when']}{', quick' if res['meta']['quick'] else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


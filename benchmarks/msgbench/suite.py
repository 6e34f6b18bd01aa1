"""The streams of each peer: one publisher process, 1 or 4 receiver processes, one result dict each.

A stream is ``count`` messages of a 100-byte payload. Every receiver reports what it
got and when (first to last arrival on its own clock); loss is what it expected minus
what it got, reported apart from goodput. The frozen case SIGSTOPs the receiver for
``FREEZE`` seconds, 0.2 s after its first message, and SIGCONTs it.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import FREEZE
from .process import Worker, say


@dataclass(frozen=True)
class Stream:
    """One figure: fan-out, per call or bulk, targeted or broadcast, frozen or not."""

    fanout: int
    mode: str = "call"  # "call": one publish per message; "bulk": BULK per call
    target: str = "targeted"  # "targeted": named receivers; "broadcast": everyone
    freeze: bool = False

    @property
    def key(self) -> str:
        head = "frozen" if self.freeze else f"1to{self.fanout}"
        return f"{head}/{self.mode}/{self.target}"


def _all_streams() -> list[Stream]:
    out = [Stream(fanout, mode, target) for fanout in (1, 4) for mode in ("call", "bulk")
           for target in ("targeted", "broadcast")]
    return [*out, Stream(1, "call", freeze=True), Stream(1, "bulk", freeze=True)]


# What each peer runs. NATS and Redis route by subject, not by name: 1->1 publishes on the
# receiver's own subject, 1->4 on one subject the four subscribe (their "targeted" figure).
STREAMS: dict[str, list[Stream]] = {
    "floor": [Stream(1), Stream(4), Stream(1, freeze=True)],
    "pylocker": _all_streams(),
    "nats": [Stream(1), Stream(4), Stream(1, freeze=True)],
    # Redis per call is one round trip per PUBLISH (~5,000/s here: 100 s a stream): pipelined only.
    "redis": [Stream(1, "bulk"), Stream(4, "bulk"), Stream(1, "bulk", freeze=True)],
}


class Suite:
    """Runs the streams of one peer at a time and summarises them."""

    def __init__(self, count: int, workdir: Path, code: str, only: list[str] | None = None) -> None:
        self.count = count
        self.only = only or []  # key fragments: run only the streams that contain one
        self.work = workdir
        self.code = code
        self.result_wait = 60.0 + count / 5000  # a stalled stream fails, it does not hang
        self._n = 0

    def _dir(self, name: str) -> Path:
        self._n += 1
        path = self.work / f"{self._n:02d}-{name.replace('/', '-')}"
        path.mkdir()
        return path

    def run_peer(self, peer: str, conn: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for stream in STREAMS[peer]:
            if self.only and not any(word in stream.key for word in self.only):
                continue
            say(f"{peer}: {stream.key}, {self.count:,} messages")
            out[stream.key] = self.stream(peer, stream, conn)
            s = out[stream.key]
            say(f"{peer}: {stream.key}: {s['goodput'] or 0:,.0f}/s per receiver, lost {s['lost']:,}")
        return out

    def stream(self, peer: str, stream: Stream, conn: dict[str, Any]) -> dict[str, Any]:
        d = self._dir(f"{peer}-{stream.key}")
        base = dict(conn, count=self.count, mode=stream.mode, code=self.code)
        workers: list[Worker] = []
        try:
            if peer == "pylocker":
                server_file = str(d / "bench.serverlocker")
                server = Worker("pylocker-server", {"server_file": server_file, "code": self.code}, "server", d)
                workers.append(server)
                server.recv(60, "ready")
                base["server_file"] = server_file
            publisher: Worker | None = None
            if peer == "floor":  # the publisher binds; receivers connect to it
                publisher = Worker("floor-publisher", dict(base, fanout=stream.fanout), "publisher", d)
                workers.append(publisher)
                base["port"] = publisher.recv(30, "port")["port"]
            receivers = []
            for i in range(stream.fanout):
                subject = f"bench.r{i}" if stream.fanout == 1 and stream.target == "targeted" else "bench.all"
                receivers.append(Worker(f"{peer}-receiver", dict(base, index=i, subject=subject), f"receiver{i}", d))
            workers.extend(receivers)
            names = [r.recv(60, "ready")["name"] for r in receivers]
            if publisher is None:
                subject = "bench.r0" if stream.fanout == 1 and stream.target == "targeted" else "bench.all"
                targets = names if stream.target == "targeted" else None
                publisher = Worker(f"{peer}-publisher", dict(base, receivers=targets, subject=subject), "publisher", d)
                workers.append(publisher)
            publisher.recv(60, "ready")
            publisher.send("go")
            if stream.freeze:
                frozen = receivers[0]
                frozen.recv(self.result_wait, "first")
                time.sleep(0.2)
                frozen.signal(signal.SIGSTOP)
                time.sleep(FREEZE)
                frozen.signal(signal.SIGCONT)
            results = [r.recv(self.result_wait, "received") for r in receivers]
            published = publisher.recv(self.result_wait, "sent")
        finally:
            for worker in reversed(workers):
                worker.stop()
        return _summary(published, results)


def _summary(published: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["goodput"] for r in results if r["goodput"]]
    lost = [r["expected"] - r["received"] for r in results]
    return {"sent": published["sent"], "publish_rate": published["publish_rate"],
            "publish_failures": published.get("failures", 0),
            "goodput": sum(rates) / len(results) if rates else None,  # mean per receiver (0 for one that got nothing)
            "goodput_min": min(rates) if len(rates) == len(results) else None,
            "lost": sum(lost), "lost_per_receiver": lost,
            "dropped": sum(r["dropped"] or 0 for r in results), "receivers": results, "publisher": published}

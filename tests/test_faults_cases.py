"""Issue 11's cases, one test each where a deterministic test can show it (the cores, files)."""

from __future__ import annotations

from pylocker import protocol as p
from pylocker.election.base import first_token
from pylocker.server_core import ServerCore


def _recovering_core(epoch: int = 2, expected: frozenset[str] = frozenset({"holder"})) -> ServerCore:
    return ServerCore(name="s", unique_name="server", now=0.0, lease=5.0, epoch=epoch,
                      first_token=first_token(epoch), recover_from=set(expected), grace=10.0)


def _hello(core: ServerCore, peer: bytes, unique_name: str) -> None:
    core.receive(peer, [p.encode(p.Hello(1, unique_name, unique_name, 1))], 0.0)


def _reclaim(core: ServerCore, peer: bytes, lock_id: str, names: list[str], token: int) -> bool:
    core.take()
    core.receive(peer, [p.encode(p.Reclaim(7, lock_id, names, token))], 0.0)
    replies = [p.decode(frame) for to, frame in core.take().sends if to == peer]
    return any(isinstance(r, p.Reclaimed) and r.granted for r in replies)


def test_case6_a_reclaim_with_a_token_of_this_epoch_or_beyond_is_refused() -> None:
    core = _recovering_core()
    _hello(core, b"holder", "holder")
    assert not _reclaim(core, b"holder", "x1", ["a"], 2**63 - 1)  # would push every later token off the wire
    assert not _reclaim(core, b"holder", "x2", ["b"], first_token(2) + 5)  # a token this epoch never granted
    assert _reclaim(core, b"holder", "x3", ["c"], first_token(1) + 9)  # a grant of the previous epoch
    core.receive(b"holder", [p.encode(p.ReclaimDone(0))], 0.0)
    core.take()
    _hello(core, b"other", "other")
    core.receive(b"other", [p.encode(p.Acquire(3, ["z"], 0))], 0.0)
    grants = [p.decode(frame) for _, frame in core.take().sends if p.decode(frame).__class__ is p.Grant]
    assert len(grants) == 1 and first_token(2) <= grants[0].token < first_token(3)


def test_case6_only_the_previous_servers_clients_may_reclaim_while_recovering() -> None:
    core = _recovering_core(expected=frozenset({"holder"}))
    _hello(core, b"stranger", "stranger")
    assert not _reclaim(core, b"stranger", "x1", ["a"], first_token(1) + 1)  # not a client of epoch 1
    _hello(core, b"holder", "holder")
    assert _reclaim(core, b"holder", "x1", ["a"], first_token(1) + 1)

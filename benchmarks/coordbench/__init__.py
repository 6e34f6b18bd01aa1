"""The coordination benchmark behind ``benchmarks/bench_coordination.py``, one job per module.

* ``common``: the constants both sides share (password, names, ZooKeeper paths).
* ``gauge``: a counter in shared memory that catches a writer overlapping a reader
  and more semaphore holders than slots.
* ``peers``: one interface over pylocker and kazoo: shared, exclusive and semaphore
  holds, and a campaign for leadership.
* ``workers``: the roles that run in child processes (``--worker ROLE --spec JSON``).
* ``zookeeper``: a standalone ZooKeeper on loopback, started and stopped by PID.
* ``suite``: the figures of one peer (throughput phases, leader changes).
* ``run``: one whole run: both peers, then ``coordination.json`` and ``coordination.md``.
* ``report``: the Markdown table.

The worker side (``workers``, ``peers``, ``gauge``, ``common``) imports only the
standard library when it loads; a role imports pylocker or kazoo when it needs it.
"""

"""The lock benchmark behind ``benchmarks/bench_locks.py``, one job per module.

* ``common``: the constants both sides share (password, seed version, payload sizes).
* ``adapters``: one acquire/release interface over pylocker, pylocker 3.1.0 and Redis.
* ``workers``: the roles that run in child processes (``--worker ROLE --spec JSON``).
* ``process``: starting, talking to and stopping those processes (by PID).
* ``suite``: the figures of each peer: echo floor, pylocker, pylocker 3.1.0, Redis, scale.
* ``run``: one whole run: the selected peers, then ``locks.json``, ``locks.md``, ``locks.png``.
* ``report``: the goals, the Markdown table and the chart.

The worker side (``workers``, ``adapters``, ``common``) imports only the standard
library when it is loaded, and this ``__init__`` imports nothing: the pylocker 3.1.0
workers run under that venv's interpreter, with no pylocker 4 on its path, and a
worker imports pylocker (whichever ``--code`` or the venv provides), pyzmq, psutil
or redis only inside the role that needs it.
"""

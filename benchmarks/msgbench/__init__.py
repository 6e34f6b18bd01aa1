"""The message benchmark suite behind ``benchmarks/bench_messages.py``, one job per module.

``common`` (constants both sides share), ``process`` (worker processes seen from the
orchestrator), ``workers`` (the child side: role dispatch and the receive tally),
``peer_pylocker``, ``peer_floor``, ``peer_nats`` and ``peer_redis`` (each peer's
publisher and receiver roles), ``servers`` (nats-server and redis-server, started and
stopped by PID), ``suite`` (the streams of each peer), ``report`` (goals and table)
and ``run`` (one whole run).
"""

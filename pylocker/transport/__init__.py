"""ZeroMQ sockets, CURVE keys and the wake-up pipe, behind a small interface."""

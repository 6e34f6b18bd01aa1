"""CURVE key pairs derived from the shared password.

Both key pairs (the serving locker's and the one every client presents) come from
the password through scrypt with fixed, documented parameters and salts. Every
locker that knows the password derives the same keys; no other can complete the
CURVE handshake. The password itself never leaves this process.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Final, NamedTuple

import zmq
from zmq.utils import z85

SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SERVER_SALT: Final = b"pylocker/curve/server/v1"
CLIENT_SALT: Final = b"pylocker/curve/client/v1"


class KeyPair(NamedTuple):
    public: bytes  # z85, 40 bytes
    secret: bytes  # z85, 40 bytes

    def __repr__(self) -> str:  # never show the secret
        return f"KeyPair(public={self.public!r})"


class CurveKeys(NamedTuple):
    server: KeyPair
    client: KeyPair

    def __repr__(self) -> str:
        return f"CurveKeys(server={self.server!r}, client={self.client!r})"


def _pair(password: bytes, salt: bytes) -> KeyPair:
    raw = hashlib.scrypt(password, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    secret = z85.encode(raw)
    return KeyPair(zmq.curve_public(secret), secret)


@functools.lru_cache(maxsize=8)
def _derive(password: bytes) -> CurveKeys:
    return CurveKeys(_pair(password, SERVER_SALT), _pair(password, CLIENT_SALT))


def derive_keys(password: str) -> CurveKeys:
    """The server and client key pairs for ``password`` (cached: scrypt is slow on purpose)."""
    return _derive(password.encode("utf-8"))

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


def load_key_pair(path: str) -> KeyPair:
    """A key pair from a zmq.auth secret certificate file (``*.key_secret``)."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(path)
    if not secret:
        raise ValueError(f"key_file {path!r} holds no secret key (give the .key_secret file)")
    return KeyPair(public, secret)


def load_authorized_keys(directory: str) -> set[bytes]:
    """The public keys of every zmq.auth certificate file in ``directory``."""
    import os

    import zmq.auth

    if not os.path.isdir(directory):
        raise ValueError(f"authorized_keys {directory!r} is not a directory")
    keys = set(zmq.auth.load_certificates(directory))
    if not keys:
        raise ValueError(f"authorized_keys {directory!r} holds no certificate")
    return keys

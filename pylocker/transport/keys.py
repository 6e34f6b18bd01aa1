"""CURVE key pairs derived from the shared password, within a realm.

Both key pairs (the serving locker's and the one every client presents) come from
the password through scrypt with fixed, documented parameters, salted with the
*realm*: every locker that knows the password and the realm derives the same keys;
no other can complete the CURVE handshake. The realm keeps one precomputed table
of passwords from serving against every deployment: give each deployment its own.
The password itself never leaves this process.

What a weak password exposes: anybody who can watch the traffic can guess
passwords offline at scrypt's cost (about 50 ms each here), and a guessed password
is a working client key. Use a long random password, or per-machine key files.
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
SERVER_SALT: Final = b"pylocker/curve/server/v1/"
CLIENT_SALT: Final = b"pylocker/curve/client/v1/"
DEFAULT_REALM: Final = "pylocker"


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
def _derive(password: bytes, realm: bytes) -> CurveKeys:
    return CurveKeys(_pair(password, SERVER_SALT + realm), _pair(password, CLIENT_SALT + realm))


def derive_keys(password: str, realm: str = DEFAULT_REALM) -> CurveKeys:
    """The server and client key pairs for ``password`` in ``realm`` (cached: scrypt is slow on purpose)."""
    return _derive(password.encode("utf-8"), realm.encode("utf-8"))


def load_key_pair(path: str) -> KeyPair:
    """A key pair from a zmq.auth secret certificate file (``*.key_secret``)."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(path)
    if not secret:
        raise ValueError(f"key_file {path!r} holds no secret key (give the .key_secret file)")
    return KeyPair(public, secret)


def load_public_key(path: str) -> KeyPair:
    """The key pair of a zmq.auth certificate: its public key, and its secret if the file holds one."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(path)
    return KeyPair(public, secret or b"")


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

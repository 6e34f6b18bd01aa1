"""What a ``zookeeper://`` server-file URL says: the ensemble, the path, the session, the secrets.

``zookeeper://host1:2181,host2:2181/pylocker/myapp?session_timeout=10`` names the
ensemble to connect to and the znode under which one election lives. Secrets never
go in the URL (it shows in process lists and logs): the digest identity
``user:password`` comes from the ``PYLOCKER_ZOOKEEPER_AUTH`` environment variable or
from a file named by ``auth_file=``. TLS is asked for with ``tls=1`` and optionally
``ca=``, ``cert=``, ``key=`` (PEM files), as kazoo takes them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, urlsplit

from ..errors import ServerFileError

SCHEME: Final = "zookeeper"
AUTH_ENV: Final = "PYLOCKER_ZOOKEEPER_AUTH"
DEFAULT_SESSION_TIMEOUT: Final = 10.0  # seconds, as kazoo's own default
MIN_SESSION_TIMEOUT: Final = 4.0  # a server needs a few heartbeats' margin inside its session
_OPTIONS: Final = frozenset({"session_timeout", "connect_timeout", "auth_file", "tls", "ca", "cert", "key"})


def is_zookeeper_url(server_file: str) -> bool:
    """Whether a ``serverFile`` argument names a ZooKeeper election rather than a file."""
    return server_file.lower().startswith(SCHEME + "://")


@dataclass(frozen=True)
class ZooKeeperConfig:
    """Where the election lives and how to reach it (the password is kept out of ``repr``)."""

    hosts: str  # "host1:2181,host2:2181", as kazoo takes it
    path: str  # the election's znode, e.g. "/pylocker/myapp"
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    connect_timeout: float = DEFAULT_SESSION_TIMEOUT
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def url(self) -> str:
        """The URL without its options: what messages show."""
        return f"{SCHEME}://{self.hosts}{self.path}"


def _seconds(options: dict[str, str], name: str, default: float, url: str) -> float:
    if name not in options:
        return default
    try:
        value = float(options[name])
    except ValueError:
        raise ServerFileError(f"{url}: {name}={options[name]!r} is not a number of seconds") from None
    if not value > 0:
        raise ServerFileError(f"{url}: {name} must be positive")
    return value


def read_auth(text: str, where: str) -> tuple[str, str]:
    """``user:password`` split in two; ServerFileError naming ``where`` when it is not that."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise ServerFileError(f"{where} must hold 'user:password' (a ZooKeeper digest identity)")
    return user, password


def _auth_from_file(path: str) -> tuple[str, str]:
    try:
        info = os.stat(path)
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ServerFileError(f"ZooKeeper secret {path!r} is readable by others: chmod 600 it")
        with open(path, encoding="utf-8") as handle:
            text = handle.read(4096)
    except OSError as exc:
        raise ServerFileError(f"cannot read the ZooKeeper secret {path!r}: {exc.strerror or exc}") from None
    return read_auth(text, f"ZooKeeper secret {path!r}")


def parse_url(url: str) -> ZooKeeperConfig:
    """The configuration a ``zookeeper://`` URL names; ServerFileError saying what is wrong otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ServerFileError(f"{url!r} is not a {SCHEME}:// URL")
    if "@" in parts.netloc:
        raise ServerFileError(f"{SCHEME}:// URLs never carry secrets (they show in process lists): give "
                              f"'user:password' in ${AUTH_ENV} or in a file named by auth_file=")
    if not parts.netloc:
        raise ServerFileError(f"{url!r} names no ZooKeeper host (zookeeper://host:2181/path)")
    path = parts.path.rstrip("/")
    if not path or "//" in path:
        raise ServerFileError(f"{url!r} names no election path (zookeeper://host:2181/pylocker/myapp)")
    raw = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = set(raw) - _OPTIONS
    if unknown:
        raise ServerFileError(f"{url}: unknown option(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(sorted(_OPTIONS))})")
    options = {name: values[-1] for name, values in raw.items()}
    session = _seconds(options, "session_timeout", DEFAULT_SESSION_TIMEOUT, url)
    if session < MIN_SESSION_TIMEOUT:
        raise ServerFileError(f"{url}: session_timeout must be at least {MIN_SESSION_TIMEOUT:g} s")
    user = password = None
    if "auth_file" in options:
        user, password = _auth_from_file(options["auth_file"])
    elif os.environ.get(AUTH_ENV):
        user, password = read_auth(os.environ[AUTH_ENV], f"${AUTH_ENV}")
    return ZooKeeperConfig(
        hosts=parts.netloc, path=path, session_timeout=session,
        connect_timeout=_seconds(options, "connect_timeout", session, url), user=user, password=password,
        tls=options.get("tls", "0").lower() in ("1", "true", "yes"),
        ca=options.get("ca") or None, cert=options.get("cert") or None, key=options.get("key") or None)

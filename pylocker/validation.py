"""Argument checks and seed return codes shared by the seed facade's two halves."""

from __future__ import annotations

import logging
import math
from typing import Any

from . import protocol
from .errors import PylockerError
from .holds import PLAIN, SHARED_CLAIM, Claim
from .protocol import MAX_NAME_LEN, MAX_NAMES


def code_for(exc: PylockerError, codes: dict[type[PylockerError], int]) -> int | str:
    for kind, code in codes.items():
        if isinstance(exc, kind):
            return code
    return str(exc)


def check_number(value: Any, argument: str, *, allow_none: bool = False, positive: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, not {type(value).__name__}")
    if math.isnan(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{argument} must be {'> 0' if positive else '>= 0'}, got {value!r}")


def check_bool(value: Any, argument: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{argument} must be True or False, not {type(value).__name__}")


def names(path: Any) -> list[str]:
    """The seed's ``path`` argument (a string or a list of strings) as a list of names."""
    if type(path) is str and 0 < len(path) <= MAX_NAME_LEN:
        return [path]  # the common case, checked in full
    names = [path] if isinstance(path, str) else path
    if not isinstance(names, (list, tuple, set, frozenset)):
        raise TypeError(f"path must be a string or a list of strings, not {type(path).__name__}")
    if not names:
        raise ValueError("path must name at least one path")
    if len(names) > MAX_NAMES:
        raise ValueError(f"path names {len(names)} paths; at most {MAX_NAMES} per lock")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"every path must be a string, got {type(name).__name__}")
        if not name or len(name) > MAX_NAME_LEN:
            raise ValueError(f"a path must have 1 to {MAX_NAME_LEN} characters, got {len(name)}")
    return list(dict.fromkeys(names))


def lock_request(path: Any, timeout: Any, default_timeout: float, shared: Any) -> tuple[list[str], float, Claim]:
    """What a lock call's arguments ask for: the names, the timeout (``default_timeout`` if None), the claim."""
    asked = names(path)
    if timeout is None:
        timeout = default_timeout
    else:
        check_number(timeout, "timeout")
    check_bool(shared, "shared")
    return asked, timeout, SHARED_CLAIM if shared else PLAIN


def check_message(message: Any) -> None:
    if type(message) is not str or len(message) > protocol.MAX_MESSAGE:
        if not isinstance(message, str):
            raise TypeError(f"message must be a string, not {type(message).__name__}")
        raise ValueError(f"message is {len(message)} characters long; at most {protocol.MAX_MESSAGE}")


def receivers(receivers: Any) -> list[str] | None:
    if receivers is None:
        return None
    if type(receivers) is list and len(receivers) == 1 and type(receivers[0]) is str:
        return receivers
    names = [receivers] if isinstance(receivers, str) else receivers
    if not isinstance(names, (list, tuple, set, frozenset)):
        raise TypeError(f"receivers must be None or a list of unique names, not {type(receivers).__name__}")
    if len(names) > protocol.MAX_RECEIVERS:
        raise ValueError(f"at most {protocol.MAX_RECEIVERS} receivers per publication")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"every receiver must be a unique name (a string), got {type(name).__name__}")
    return list(dict.fromkeys(names))


def check_locker_arguments(*, password: Any, name: Any, port: Any, connectTimeout: Any, lease: Any,
                           logger: Any, realm: Any, mailbox_size: Any, mailbox_bytes: Any, receive_messages: Any,
                           **flags_and_paths: Any) -> None:
    """The types and ranges of ServerLocker's arguments (booleans and paths by keyword)."""
    if not isinstance(password, str):
        raise TypeError(f"password must be a string, not {type(password).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be None or a string, not {type(name).__name__}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
    for argument, value in flags_and_paths.items():
        if argument.endswith(("_file", "_keys")):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{argument} must be None or a path, not {type(value).__name__}")
        else:
            check_bool(value, argument)
    check_number(connectTimeout, "connectTimeout", positive=True)
    check_number(lease, "lease", allow_none=True, positive=True)
    if logger is not False and logger is not None and not isinstance(logger, logging.Logger):
        raise TypeError("logger must be a logging.Logger (or False for pylocker's own)")
    if not isinstance(realm, str) or not realm:
        raise TypeError("realm must be a non-empty string")
    for value, argument in ((mailbox_size, "mailbox_size"), (mailbox_bytes, "mailbox_bytes")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    check_bool(receive_messages, "receive_messages")

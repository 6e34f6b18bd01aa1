"""Facts about this package, returned by the seed's package functions."""

from __future__ import annotations

from typing import Final

VERSION: Final = "4.0.0.dev0"
AUTHOR: Final = "Bachir Aoun"
EMAIL: Final = "bachir.aoun@e-aoun.com"
DOC: Final = "https://bachiraoun.github.io/pylocker/"
REPOSITORY: Final = "https://github.com/bachiraoun/pylocker"
PYPI: Final = "https://pypi.org/project/pylocker/"


def get_version() -> str:
    """Get pylocker's version number."""
    return VERSION


def get_author() -> str:
    """Get pylocker's author's name."""
    return AUTHOR


def get_email() -> str:
    """Get pylocker's author's email."""
    return EMAIL


def get_doc() -> str:
    """Get pylocker's official online documentation link."""
    return DOC


def get_repository() -> str:
    """Get pylocker's official online repository link."""
    return REPOSITORY


def get_pypi() -> str:
    """Get pylocker pypi's link."""
    return PYPI

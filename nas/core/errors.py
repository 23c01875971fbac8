"""Errors with one-line messages that name the problem and the fix."""

from __future__ import annotations


class NasError(Exception):
    """Base class: every error the project raises on purpose derives from it.

    Command-line entry points print ``str(err)`` on one line and exit non-zero.
    """


class SpecError(NasError, ValueError):
    """An architecture spec, block string or spec file is invalid."""


class SpaceError(NasError, ValueError):
    """A search-space definition is invalid, or a spec/token list is not in the space."""


class ConfigError(NasError, ValueError):
    """A run configuration (YAML or command line) is invalid."""


class DataError(NasError):
    """A data set is missing or malformed."""


class NoResultError(NasError):
    """A run finished without a usable result (every child or candidate failed); the
    commands exit 1 instead of 2, since the input may have been fine."""


def where(source: str | None, key: str) -> str:
    """Format the location of a problem: ``file.yaml: stages[2].kernel``."""
    return f"{source}: {key}" if source else key

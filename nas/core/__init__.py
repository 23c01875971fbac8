"""The floor every other layer stands on: errors, number checks, files.

Nothing here imports torch, Ray or any other part of the project.
"""

from nas.core.checks import check_int, check_number, is_int, is_number
from nas.core.errors import (
           ConfigError,
           DataError,
           NasError,
           SpaceError,
           SpecError,
           where,
)

__all__ = ["NasError", "SpecError", "SpaceError", "ConfigError", "DataError", "where",
           "is_int", "is_number", "check_int", "check_number"]

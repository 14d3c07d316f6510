"""Frozen config dataclasses that round-trip through plain dicts (for weights_only checkpoints)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, TypeVar

from polstereo.errors import PolstereoError

T = TypeVar("T", bound="PlainConfig")


class PlainConfig:
    """Mixin for a frozen dataclass: ``to_dict`` (tuples become lists) and a strict ``from_dict``.

    ``what`` names the config in the error for unknown keys.
    """

    what: ClassVar[str] = "config"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[T], values: dict) -> T:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PolstereoError(f"unknown {cls.what} option(s): {', '.join(unknown)}")
        return cls(**values)

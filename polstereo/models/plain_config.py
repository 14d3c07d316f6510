"""Frozen config dataclasses that round-trip through plain dicts (for weights_only checkpoints)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from polstereo.errors import PolstereoError

T = TypeVar("T", bound="PlainConfig")


@dataclasses.dataclass(frozen=True)
class RetiredField:
    """A field a config had until a lever was removed (docs/notebook/2026-12-07-removed-levers.md).

    ``default``: the value every config without the lever held; a stored config with it reads as
    before. ``option``: the command-line flag users knew it by. ``evidence``: the measurement
    that retired it. ``commit``: a commit that still has it.
    """

    default: Any
    option: str
    evidence: str
    commit: str

    def refusal(self, what: str, name: str, value: Any) -> str:
        """The one-line error for a stored config that uses the lever (``name=value``)."""
        return (f"this {what} has {name}={value!r}: {self.option}, removed as a lever that did not pay on glass "
                f"({self.evidence}); commit {self.commit} still has it (docs/notebook/2026-12-07-removed-levers.md)")


class PlainConfig:
    """Mixin for a frozen dataclass: ``to_dict`` (tuples become lists) and a strict ``from_dict``.

    ``what`` names the config in the error for unknown keys. ``retired``: fields removed with a
    lever, by name; ``from_dict`` drops one that holds its old default and refuses any other value.
    """

    what: ClassVar[str] = "config"
    retired: ClassVar[dict[str, RetiredField]] = {}

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[T], values: dict) -> T:
        values = cls.without_retired(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PolstereoError(f"unknown {cls.what} option(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def without_retired(cls, values: dict) -> dict:
        """``values`` without the retired fields that hold their old default (they describe the
        same config); PolstereoError, one line, for one that holds anything else."""
        for name, gone in cls.retired.items():
            if name in values and values[name] != gone.default:
                raise PolstereoError(gone.refusal(cls.what, name, values[name]))
        return {k: v for k, v in values.items() if k not in cls.retired}

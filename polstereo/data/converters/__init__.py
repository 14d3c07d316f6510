"""Source-layout converters for ``polstereo convert-dataset``: one class per layout.

:data:`CONVERTERS` maps a layout name to its :class:`Converter` subclass (adding a layout
is a new module with a subclass and a new entry in ``registry.py``);
:func:`convert_dataset` runs any of them into ``train.h5`` / ``val.h5`` / ``test.h5``.
"""

from __future__ import annotations

from polstereo.data.converters.base import Converter, FileRole, SkipSample, SourceOptions
from polstereo.data.converters.pipeline import (
    SPLITS, ConvertConfig, ConvertReport, assign_splits, convert_dataset, read_split_file,
)
from polstereo.data.converters.registry import CONVERTERS

__all__ = [
    "CONVERTERS", "Converter", "FileRole", "SkipSample", "SourceOptions", "SPLITS", "ConvertConfig",
    "ConvertReport", "assign_splits", "convert_dataset", "read_split_file",
]

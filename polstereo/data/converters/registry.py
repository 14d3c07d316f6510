"""Layout name -> converter class. A new layout is a new entry."""

from __future__ import annotations

from polstereo.data.converters.base import Converter
from polstereo.data.converters.folder import FolderConverter
from polstereo.data.converters.mitsuba import MitsubaConverter
from polstereo.data.converters.mosaic import MosaicConverter

CONVERTERS: dict[str, type[Converter]] = {
    cls.name: cls for cls in (FolderConverter, MitsubaConverter, MosaicConverter)
}

"""Compatibility module: the format's code lives in :mod:`polstereo.data.h5` (``schema``,
``writer``, ``reader``, ``validate``). Kept because README's Python API and users' scripts
import from here (``from polstereo.data.h5format import H5Reader``); new code imports
from ``polstereo.data.h5`` or the module that owns the name.
"""

from polstereo.data.h5 import (DEFAULT_ANGLES_DEG, FORMAT_NAME, FORMAT_VERSION, EncodedSample, H5Reader, H5Writer,
                               Sample, ShardedReader, data_files, encode_sample, ground_truth_mask, open_dataset,
                               parse_glass_kinds, require_valid, sample_key, validate, validate_isolated,
                               write_samples)
from polstereo.data.h5.reader import CORRUPT_FILE_ERRORS
from polstereo.data.h5.schema import (COLOR_CHANNELS, DEFAULT_WHITE_LEVEL, IMAGE_DTYPES, MASK_NAMES,
                                      SAMPLE_ATTRS_FLOAT, SAMPLE_ATTRS_TEXT, SAMPLES_GROUP)
from polstereo.data.h5.writer import COMPRESSION, DISK_MARGIN, TILE

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_ANGLES_DEG", "Sample", "H5Writer", "H5Reader", "EncodedSample",
    "encode_sample", "ShardedReader", "data_files", "open_dataset", "parse_glass_kinds",
    "write_samples", "validate", "validate_isolated", "require_valid", "sample_key",
    # the module's other public names, as they were before the split
    "COLOR_CHANNELS", "COMPRESSION", "CORRUPT_FILE_ERRORS", "DEFAULT_WHITE_LEVEL", "DISK_MARGIN", "IMAGE_DTYPES",
    "MASK_NAMES", "SAMPLE_ATTRS_FLOAT", "SAMPLE_ATTRS_TEXT", "SAMPLES_GROUP", "TILE", "ground_truth_mask",
]

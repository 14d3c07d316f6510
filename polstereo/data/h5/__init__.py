"""The polstereo HDF5 dataset format (docs/format.md), one module per concept: ``schema``
(constants, :class:`Sample`, the checks of a sample), ``writer``, ``reader`` (one file or
shards) and ``validate``. The public names are re-exported here::

    from polstereo.data.h5 import H5Reader, write_samples, validate
"""

from polstereo.data.h5.reader import H5Reader, ShardedReader, data_files, open_dataset
from polstereo.data.h5.schema import (DEFAULT_ANGLES_DEG, FORMAT_NAME, FORMAT_VERSION, Sample, ground_truth_mask,
                                      parse_glass_kinds, sample_key)
from polstereo.data.h5.validate import require_valid, validate, validate_isolated
from polstereo.data.h5.writer import EncodedSample, H5Writer, encode_sample, write_samples

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_ANGLES_DEG", "Sample", "H5Writer", "H5Reader", "EncodedSample",
    "encode_sample", "ShardedReader", "data_files", "open_dataset", "parse_glass_kinds", "ground_truth_mask",
    "write_samples", "validate", "validate_isolated", "require_valid", "sample_key",
]

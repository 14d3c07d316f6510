"""Byte-flip mutants of a valid file: ``polstereo inspect`` never tracebacks or crashes."""

import numpy as np
from click.testing import CliRunner

from polstereo.cli.main import cli
from polstereo.data.h5 import write_samples
from tests.conftest import make_sample


def test_inspect_gives_a_clean_verdict_on_every_byte_flip_mutant(tmp_path):
    source = tmp_path / "valid.h5"
    write_samples(source, [make_sample(np.random.default_rng(0), h=8, w=8, name=f"s{i}") for i in range(2)],
                  provenance={"source": "fuzz"})
    data = source.read_bytes()
    rng = np.random.default_rng(2024)
    verdicts = []
    for _ in range(100):
        mutant = bytearray(data)
        mutant[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
        path = tmp_path / "mutant.h5"
        path.write_bytes(bytes(mutant))
        result = CliRunner().invoke(cli, ["inspect", str(path), "--quiet"])
        # exit 0 (the flip hit unused bytes) or 1 with one line; never an exception escaping the CLI
        assert result.exit_code in (0, 1) and isinstance(result.exception, (SystemExit, type(None))), result.output
        if result.exit_code == 1:
            assert result.output.splitlines()[-1].startswith("Error: ")
        verdicts.append(result.exit_code)
    assert verdicts.count(1) >= 5  # the mutants do reach the validator's checks


def test_a_file_that_crashes_the_hdf5_library_is_reported_not_fatal(tmp_path, monkeypatch):
    import importlib
    import os
    import signal

    from polstereo.errors import PolstereoError

    def crash(path, deep=True):
        os.kill(os.getpid(), signal.SIGSEGV)  # what some corrupt attribute headers do inside libhdf5
    # the module, not the function that polstereo.data.h5 re-exports under the same name
    validate_module = importlib.import_module("polstereo.data.h5.validate")
    monkeypatch.setattr(validate_module, "validate", crash)
    try:
        validate_module.validate_isolated(tmp_path / "x.h5")
    except PolstereoError as err:
        assert "the HDF5 library crashed reading it (SIGSEGV)" in str(err)
    else:
        raise AssertionError("no error")

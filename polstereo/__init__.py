"""polstereo: polarization-aware stereo matching of transparent objects."""

__version__ = "0.1.0"

from polstereo.errors import PolstereoError  # noqa: E402

__all__ = ["PolstereoError", "__version__"]

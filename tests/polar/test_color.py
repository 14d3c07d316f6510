import numpy as np
import pytest
import torch

from polstereo.data.converters.base import to_color
from polstereo.inference.pipeline import match_channels
from polstereo.polar.color import LUMA_WEIGHTS, luma


def test_luma_weights_known_values_numpy_and_torch_agree():
    assert sum(LUMA_WEIGHTS) == pytest.approx(1.0)
    rgb = np.zeros((2, 3, 1, 1), np.float32)
    rgb[0, 0], rgb[0, 1], rgb[0, 2] = 1.0, 0.0, 0.0   # pure red
    rgb[1] = 0.5                                          # grey stays grey
    out = luma(rgb, axis=1)
    assert out.shape == (2, 1, 1, 1)
    assert out[0, 0, 0, 0] == pytest.approx(0.2126) and out[1, 0, 0, 0] == pytest.approx(0.5)
    t = luma(torch.from_numpy(rgb), axis=1)
    np.testing.assert_allclose(t.numpy(), out, rtol=1e-6)
    with pytest.raises(ValueError, match="3 colour channels"):
        luma(np.zeros((2, 4, 3, 3)), axis=1)


def test_inference_sees_rgb_as_the_converters_write_it(rng):
    # a mono model fed RGB at inference must see the image convert-dataset --color mono wrote
    stack = rng.random((4, 3, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(match_channels(stack, 1), to_color(stack, "mono"), rtol=1e-6)
    as_uint16 = (stack * 4095).astype(np.uint16)
    np.testing.assert_allclose(to_color(as_uint16, "mono").astype(np.float32),
                               np.round(match_channels(as_uint16, 1)), atol=0.5)

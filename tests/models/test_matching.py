import torch
import torch.nn.functional as F

from polstereo.models.base.matching import correlation_1d, global_matching, positive_disparity_mask


D = 64
SHARP = 50.0 * D ** 0.5  # turns the cosine similarity of unit features into logits of +-50


def unit_features(h: int, w: int) -> torch.Tensor:
    return F.normalize(torch.randn(1, D, h, w), dim=1)


def shifted_features(shift: int, h: int = 3, w: int = 24):
    """Unit random features, left(x) = right(x - shift): true disparity ``shift`` where x >= shift."""
    right = unit_features(h, w)
    left = unit_features(h, w)
    left[..., shift:] = right[..., :w - shift]
    return left, right


def test_correlation_is_scaled_row_dot_product():
    left, right = torch.randn(2, 8, 3, 5), torch.randn(2, 8, 3, 5)
    corr = correlation_1d(left, right)
    assert corr.shape == (2, 3, 5, 5)
    expected = (left[1, :, 2, 4] * right[1, :, 2, 1]).sum() / 8 ** 0.5
    assert torch.allclose(corr[1, 2, 4, 1], expected, atol=1e-6)


def test_global_matching_recovers_constant_shift():
    left, right = shifted_features(6)
    disparity, confidence = global_matching(correlation_1d(left, right) * SHARP)
    interior = disparity[..., 6:]
    assert torch.allclose(interior, torch.full_like(interior, 6.0), atol=1e-3)
    assert (confidence[..., 6:] > 0.99).all()


def test_global_matching_never_returns_negative_disparity():
    # The best match lies at x' > x (a "negative" shift): masked, so the estimate stays >= 0.
    right = unit_features(2, 20)
    left = unit_features(2, 20)
    left[..., :-4] = right[..., 4:]
    disparity, confidence = global_matching(correlation_1d(left, right) * SHARP)
    assert (disparity >= 0).all()
    assert ((confidence >= 0) & (confidence <= 1)).all()


def test_positive_disparity_mask_allows_only_left_candidates():
    mask = positive_disparity_mask(3)
    assert mask.tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_global_matching_has_no_maximum_disparity():
    # A shift of 90 px at 1/4 resolution needs no disparity range configured anywhere.
    left, right = shifted_features(90, w=128, h=1)
    disparity, _ = global_matching(correlation_1d(left, right) * SHARP)
    assert torch.allclose(disparity[..., 90:], torch.full_like(disparity[..., 90:], 90.0), atol=1e-3)

import pytest
import torch

from polstereo.errors import PolstereoError
from polstereo.models.base import MODEL_CONFIGS, BaseConfig, create_model


@pytest.fixture
def tiny():
    return create_model("tiny").eval()


def test_output_shapes_on_odd_size(tiny):
    left, right = torch.rand(2, 3, 37, 53), torch.rand(2, 3, 37, 53)
    out = tiny(left, right, iters=2, all_estimates=True)
    assert out["disparity"].shape == (2, 1, 37, 53)
    assert out["confidence"].shape == (2, 1, 37, 53)
    assert out["features"].shape == (2, MODEL_CONFIGS["tiny"].feature_dim, 10, 14)
    assert [d.shape for d in out["disparities"]] == [(2, 1, 37, 53)] * 3


def test_disparity_positive_and_confidence_in_unit_range(tiny):
    out = tiny(torch.rand(1, 1, 40, 56), torch.rand(1, 1, 40, 56), all_estimates=True)
    for estimate in out["disparities"]:
        assert (estimate >= 0).all()
    assert ((out["confidence"] >= 0) & (out["confidence"] <= 1)).all()


def test_all_estimates_are_the_init_and_every_iteration_ending_with_the_disparity(tiny):
    images = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    out = tiny(*images, iters=3, all_estimates=True)
    assert len(out["disparities"]) == 4
    assert torch.equal(out["disparities"][-1], out["disparity"])
    assert torch.equal(tiny(*images, iters=3)["disparity"], out["disparity"])
    assert torch.equal(tiny(*images, iters=1, all_estimates=True)["disparities"][0], out["disparities"][0])


def test_intermediate_estimates_by_default_only_in_training(tiny):
    images = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    assert len(tiny(*images, iters=2)["disparities"]) == 1
    assert len(tiny.train()(*images, iters=2)["disparities"]) == 3


def test_mono_input_equals_replicated_rgb(tiny):
    left, right = torch.rand(1, 1, 32, 64), torch.rand(1, 1, 32, 64)
    mono = tiny(left, right)["disparity"]
    rgb = tiny(left.repeat(1, 3, 1, 1), right.repeat(1, 3, 1, 1))["disparity"]
    assert torch.equal(mono, rgb)


def test_odd_size_is_replicate_padded_bottom_right_and_cropped_back(tiny):
    left, right = torch.rand(1, 3, 37, 53), torch.rand(1, 3, 37, 53)
    out = tiny(left, right)

    def pad(x):  # to 64 x 64, the next multiples of 32
        return torch.nn.functional.pad(x, (0, 11, 0, 27), mode="replicate")

    padded = tiny.forward_padded(pad(left), pad(right))
    assert torch.equal(out["disparity"], padded["disparity"][..., :37, :53])
    assert torch.equal(out["confidence"], padded["confidence"][..., :37, :53])
    assert torch.equal(out["features"], padded["features"][..., :10, :14])


def test_rejects_wrong_channels_and_mismatched_pair(tiny):
    with pytest.raises(PolstereoError, match="1 \\(mono\\) or 3"):
        tiny(torch.rand(1, 2, 32, 32), torch.rand(1, 2, 32, 32))
    with pytest.raises(PolstereoError, match="equal shape"):
        tiny(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 36))


def test_registry_builds_each_size_with_growing_parameter_counts():
    counts = {name: sum(p.numel() for p in create_model(name).parameters()) for name in ("tiny", "small", "base")}
    assert counts["tiny"] < 500_000
    assert counts["tiny"] < counts["small"] < counts["base"]


def test_create_model_applies_overrides_and_rejects_unknowns():
    model = create_model("tiny", iters=7, corr_radius=2)
    assert model.config.iters == 7 and model.config.corr_radius == 2
    with pytest.raises(PolstereoError, match="unknown base model size"):
        create_model("huge")
    with pytest.raises(PolstereoError, match="unknown base model option"):
        create_model("tiny", dropout=0.1)


def test_config_round_trips_through_a_plain_dict():
    config = MODEL_CONFIGS["small"]
    as_dict = config.to_dict()
    assert all(isinstance(v, (int, float, str, list)) for v in as_dict.values())
    assert BaseConfig.from_dict(as_dict) == config


def test_gradients_reach_encoder_through_sequence_of_estimates():
    model = create_model("tiny").train()
    out = model(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), iters=2)
    sum(d.mean() for d in out["disparities"]).backward()
    assert model.encoder.trunk.stem[0].weight.grad.abs().sum() > 0
    assert model.match_log_scale.grad is not None

import numpy as np
import pytest
import torch
from torch import nn

from polstereo.data.h5 import write_samples
from polstereo.errors import PolstereoError
from polstereo.training.checkpoint import load_checkpoint, load_for_inference
from polstereo.training.mim import EMATeacher, mask_views, patch_mask
from polstereo.training.trainer import TrainConfig, train
from tests.training.conftest import shifted_sample

silent = lambda msg: None  # noqa: E731


def test_patch_mask_has_the_ratio_and_is_deterministic():
    mask = patch_mask(2, (64, 96), 0.4, 16, seed=5)
    assert mask.shape == (2, 1, 64, 96)
    assert mask.float().mean().item() == pytest.approx(round(0.4 * 24) / 24)
    assert torch.equal(mask, patch_mask(2, (64, 96), 0.4, 16, seed=5))
    assert not torch.equal(mask, patch_mask(2, (64, 96), 0.4, 16, seed=6))
    # whole patches: every 16x16 cell is all masked or all visible
    cells = mask[0, 0].reshape(4, 16, 6, 16).permute(0, 2, 1, 3).reshape(24, -1).float()
    assert set(cells.mean(1).tolist()) <= {0.0, 1.0}


def test_mask_views_blanks_every_angle_image_alike():
    stack = torch.rand(1, 4, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4, :] = True
    out = mask_views(stack, mask)
    assert (out[:, :, :, :4] == 0).all() and torch.equal(out[:, :, :, 4:], stack[:, :, :, 4:])


def test_ema_teacher_moves_towards_the_student():
    student = nn.Linear(2, 1)
    teacher = EMATeacher(student, decay=0.75)
    before = teacher.model.weight.clone()
    with torch.no_grad():
        student.weight.add_(4.0)
    teacher.update(student)
    torch.testing.assert_close(teacher.model.weight, 0.75 * before + 0.25 * student.weight)
    assert not any(p.requires_grad for p in teacher.model.parameters())


@pytest.fixture
def unlabeled(tmp_path):
    rng = np.random.default_rng(3)
    samples = [shifted_sample(rng) for _ in range(3)]
    for s in samples:
        s.disparity, s.transparent = None, None
    write_samples(tmp_path / "captures.h5", samples)
    return tmp_path / "captures.h5"


def test_adapt_on_unlabeled_captures_with_masking_and_teacher(unlabeled, tiny_data, tmp_path, quick):
    cfg = dict(quick, mask_ratio=0.4, ema_decay=0.9, steps=3)
    result = train(TrainConfig.from_flat(stage="A", out=tmp_path / "run", train=[unlabeled],
                                         val=tiny_data / "val.h5", **cfg), log=silent)
    assert result.steps_done == 3 and result.skipped_steps == 0
    payload = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert payload["ema_decay"] == 0.9 and "mim_head" in payload
    student, _ = load_for_inference(tmp_path / "run" / "last.ckpt")
    teacher, _ = load_for_inference(tmp_path / "run" / "last.ckpt", use_ema=True)
    s_params, t_params = dict(student.named_parameters()), dict(teacher.named_parameters())
    assert any(not torch.equal(s_params[k], t_params[k]) for k in s_params)  # the teacher lags behind


def test_masked_run_resumes_to_the_same_weights(unlabeled, tmp_path, quick):
    cfg = dict(quick, mask_ratio=0.4, steps=4, deterministic=True)
    train(TrainConfig.from_flat(stage="A", out=tmp_path / "full", train=[unlabeled], **cfg), log=silent)
    train(TrainConfig.from_flat(stage="A", out=tmp_path / "split", train=[unlabeled], stop_after=2, **cfg), log=silent)
    train(TrainConfig.from_flat(stage="A", out=tmp_path / "split", train=[unlabeled], resume=True, **cfg), log=silent)
    a, b = load_checkpoint(tmp_path / "full" / "last.ckpt"), load_checkpoint(tmp_path / "split" / "last.ckpt")
    for part in ("state_dict", "ema_state_dict", "mim_head"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)


def test_use_ema_without_a_teacher_is_a_clear_error(tiny_data, tmp_path, quick):
    train(TrainConfig.from_flat(stage="A", out=tmp_path, train=[tiny_data / "train.h5"], **quick), log=silent)
    with pytest.raises(PolstereoError, match="has no EMA teacher"):
        load_for_inference(tmp_path / "last.ckpt", use_ema=True)

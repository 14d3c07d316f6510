"""Point clouds: back-projection and PLY files that read back."""

from __future__ import annotations

import numpy as np
import pytest

from polstereo.errors import PolstereoError
from polstereo.io.pointcloud import backproject, point_cloud, read_ply, write_ply


def test_backprojection_of_a_known_pixel():
    depth = np.full((3, 4), 2.0, dtype=np.float32)
    points = backproject(depth, fx=10.0, fy=20.0, cx=1.0, cy=1.0)
    np.testing.assert_allclose(points[2, 3], [(3 - 1) * 2 / 10, (2 - 1) * 2 / 20, 2.0])


def test_point_cloud_keeps_only_finite_positive_depth():
    depth = np.array([[1.0, np.nan], [-1.0, 3.0]], dtype=np.float32)
    colors = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    points, point_colors = point_cloud(depth, 1.0, 1.0, 0.0, 0.0, colors)
    np.testing.assert_allclose(points, [[0, 0, 1], [3, 3, 3]])
    np.testing.assert_array_equal(point_colors, [[0, 1, 2], [9, 10, 11]])


def test_ply_header_names_the_vertex_count_and_properties(tmp_path):
    path = tmp_path / "p.ply"
    write_ply(path, np.zeros((5, 3)), np.zeros((5, 3), dtype=np.uint8))
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert "format binary_little_endian 1.0" in header and "element vertex 5" in header
    assert header.count("property float") == 3 and header.count("property uchar") == 3
    assert path.stat().st_size == len(header) + len("end_header\n") + 5 * 15


def test_ply_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(7, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (7, 3), dtype=np.uint8)
    write_ply(tmp_path / "p.ply", points, colors)
    back_points, back_colors = read_ply(tmp_path / "p.ply")
    np.testing.assert_array_equal(back_points, points)
    np.testing.assert_array_equal(back_colors, colors)


def test_ply_without_colours_reads_back_none(tmp_path):
    write_ply(tmp_path / "p.ply", np.ones((2, 3)))
    points, colors = read_ply(tmp_path / "p.ply")
    assert points.shape == (2, 3) and colors is None


def test_read_ply_rejects_other_files(tmp_path):
    (tmp_path / "x.ply").write_bytes(b"hello")
    with pytest.raises(PolstereoError, match="not a PLY file"):
        read_ply(tmp_path / "x.ply")

"""Path validation and the path-geometry critics, against hand-computed cases (no ROS)."""

import math

import numpy as np
import pytest

from mirage_ros.rollout import (
    CandidatePath,
    InvalidPathError,
    PathLengthCritic,
    PathTurningCritic,
    arc_fan,
    score_paths,
    validate_path,
)


def path(xy, yaws, frame="map") -> CandidatePath:
    xy = np.asarray(xy, dtype=float)
    yaws = np.asarray(yaws, dtype=float)
    zeros = np.zeros(len(yaws))
    return CandidatePath(
        frame,
        np.column_stack([xy, zeros]),
        np.column_stack([zeros, zeros, np.sin(yaws / 2), np.cos(yaws / 2)]),
        zeros,
    )


def check(p, **kw):
    return validate_path(p, 7, max_poses=kw.get("max_poses", 100), quaternion_tolerance=0.01)


def test_l_shaped_path_costs():
    # (0,0) -> (3,0) -> (3,4): 7 m; heading 0 -> 0 -> pi/2: a quarter turn.
    p = path([[0, 0], [3, 0], [3, 4]], [0, 0, math.pi / 2])
    assert PathLengthCritic().cost([p])[0] == pytest.approx(7.0)
    assert PathTurningCritic().cost([p])[0] == pytest.approx(math.pi / 2)


def test_turning_wraps_through_pi():
    # 170 deg -> -170 deg is a 20 deg turn, not 340.
    p = path([[0, 0], [0, 0]], np.radians([170, -170]))
    assert PathTurningCritic().cost([p])[0] == pytest.approx(math.radians(20))


def test_scores_are_negated_weighted_sums_and_best_is_first_max():
    a = path([[0, 0], [1, 0]], [0, 0])  # 1 m, no turn
    b = path([[0, 0], [2, 0]], [0, 0])  # 2 m
    c = path([[0, 0], [1, 0]], [0, 0])  # ties with a
    table = score_paths([a, b, c], [(PathLengthCritic(), 2.0), (PathTurningCritic(), 1.0)])
    assert table.names == ("path_length", "path_turning")
    np.testing.assert_allclose(table.scores, [-2.0, -4.0, -2.0])
    assert table.best_index == 0
    np.testing.assert_allclose(table.costs, [[1, 0], [2, 0], [1, 0]])


def test_arc_fan_is_symmetric_and_ends_where_geometry_says():
    fan = arc_fan(3, length=math.pi / 2, poses=5, max_curvature=1.0)
    # curvature +1 over a quarter circle of radius 1 ends at (1, 1) facing +y.
    np.testing.assert_allclose(fan[2].positions[-1], [1.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(fan[0].positions[-1], [1.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(fan[1].positions[-1], [math.pi / 2, 0.0, 0.0], atol=1e-12)
    assert PathTurningCritic().cost(fan) == pytest.approx([math.pi / 2, 0.0, math.pi / 2])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: CandidatePath("", p.positions, p.quaternions_xyzw, p.stamps), "empty frame_id"),
        (lambda p: CandidatePath("map", p.positions[:0], p.quaternions_xyzw[:0], p.stamps[:0]),
         "has no poses"),
        (lambda p: CandidatePath("map", p.positions * np.array([[1, np.nan, 1]]),
                                 p.quaternions_xyzw, p.stamps), "pose 0: position is NaN"),
        (lambda p: CandidatePath("map", p.positions, p.quaternions_xyzw * 1.5, p.stamps),
         "length 1.5"),
        (lambda p: CandidatePath("map", p.positions, p.quaternions_xyzw[:1], p.stamps),
         "disagree in length"),
    ],
)
def test_validation_names_the_problem(mutate, message):
    with pytest.raises(InvalidPathError, match=message) as err:
        check(mutate(path([[0, 0], [1, 0]], [0, 0])))
    assert err.value.path_index == 7
    assert str(err.value).startswith("path 7")


def test_validation_limits_pose_count_and_renormalises_small_errors():
    p = path([[0, 0], [1, 0], [2, 0]], [0, 0.1, 0.2])
    with pytest.raises(InvalidPathError, match="at most 2"):
        check(p, max_poses=2)
    slightly_off = CandidatePath("map", p.positions, p.quaternions_xyzw * 1.004, p.stamps)
    fixed = check(slightly_off)
    np.testing.assert_allclose(np.linalg.norm(fixed.quaternions_xyzw, axis=1), 1.0)


def test_non_finite_critic_output_is_refused():
    class Broken:
        name = "broken"

        def cost(self, paths):
            return np.full(len(paths), np.nan)

    with pytest.raises(FloatingPointError, match="broken"):
        score_paths([path([[0, 0], [1, 0]], [0, 0])], [(Broken(), 1.0)])

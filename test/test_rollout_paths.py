"""Path validation and the path-geometry critics, against hand-computed cases (no ROS)."""

import math

import numpy as np
import pytest

from mirage_ros.rollout import (
    CandidatePath,
    Critic,
    CriticBatch,
    InvalidPathError,
    arc_fan,
    make_critic,
    resample_path,
    score_paths,
    validate_path,
)


def cost(name, paths, **params):
    return np.asarray(make_critic(name, params).cost(CriticBatch.geometric(paths)))


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
    assert cost("path_length", [p])[0] == pytest.approx(7.0)
    assert cost("path_turning", [p])[0] == pytest.approx(math.pi / 2)


def test_turning_wraps_through_pi():
    # 170 deg -> -170 deg is a 20 deg turn, not 340.
    p = path([[0, 0], [0, 0]], np.radians([170, -170]))
    assert cost("path_turning", [p])[0] == pytest.approx(math.radians(20))


def test_scores_are_negated_weighted_sums_and_best_is_first_max():
    a = path([[0, 0], [1, 0]], [0, 0])  # 1 m, no turn
    b = path([[0, 0], [2, 0]], [0, 0])  # 2 m
    c = path([[0, 0], [1, 0]], [0, 0])  # ties with a
    table = score_paths(CriticBatch.geometric([a, b, c]),
                        [(make_critic("path_length"), 2.0), (make_critic("path_turning"), 1.0)])
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
    assert cost("path_turning", fan) == pytest.approx([math.pi / 2, 0.0, math.pi / 2])


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
    class Broken(Critic):
        name = "broken"

        def cost(self, batch):
            return np.full(batch.n_paths, np.nan)

    with pytest.raises(FloatingPointError, match="broken"):
        score_paths(CriticBatch.geometric([path([[0, 0], [1, 0]], [0, 0])]), [(Broken(), 1.0)])


def test_goal_pose_cost_is_distance_plus_weighted_heading_error():
    import torch

    from mirage_ros.geometry import planar_pose
    from mirage_ros.rollout import Goal

    p = path([[0, 0], [1, 0]], [0, math.pi / 2])
    goal = Goal(pose=torch.from_numpy(planar_pose(4.0, 4.0, 0.0)))
    batch = CriticBatch.geometric([p], goal=goal)
    c = make_critic("goal_pose", {"heading_weight": 0.5}).cost(batch)
    assert c[0] == pytest.approx(5.0 + 0.5 * math.pi / 2)
    assert cost("goal_pose", [p])[0] == 0.0  # no goal: no cost


def test_critics_refuse_unknown_or_mistyped_settings_by_name():
    with pytest.raises(ValueError, match="no critic named 'nope'"):
        make_critic("nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        make_critic("clearance", {"radius": 1.0})
    with pytest.raises(ValueError, match="min_points must be an integer"):
        make_critic("clearance", {"min_points": 2.5})
    with pytest.raises(ValueError, match="cannot be imported"):
        make_critic("no.such.module:Critic")


def test_clearance_sees_a_wall_across_the_path_and_not_one_beside_it():
    """Depth maps from cameras looking along +x: a wall 1 m ahead blocks a straight path."""
    import torch

    from mirage_ros.geometry import CameraRig

    rig = CameraRig.create(16, 16, pitch_deg=0.0)
    straight = path([[0, 0], [2, 0]], [0, 0])
    base = torch.from_numpy(resample_path(straight, 2, 1.0, 0.35))[None]  # x = 0, 1, 2 m
    cams = base @ torch.from_numpy(rig.cam_to_base)
    K = torch.from_numpy(rig.camera.K)
    wall = torch.full((1, 2, 16, 16), 1.0, dtype=torch.float64)  # everything 1 m ahead
    critic = make_critic("clearance")

    def run(depth):
        b = CriticBatch(paths=[straight], base_to_map=base, cam_to_map=cams, K_latent=K,
                        depth=depth, latents=torch.zeros(1, 2, 8, 16, 16))
        return float(critic.clearance(b)[0]), float(critic.cost(b)[0])

    clear, c = run(wall)
    assert clear < 0.07 and c == critic.collision_cost  # nearest cell centre: 1/16 m off
    clear, c = run(torch.zeros_like(wall))  # nothing seen: nothing to hit
    assert clear == math.inf and c == 0.0
    far = torch.full_like(wall, 6.0)  # beyond max_range
    assert run(far)[1] == 0.0
    # A wall 1 m ahead of a camera looking sideways (+y) is 1 m beside the path: a margin cost
    side = path([[0, 0], [2, 0]], [math.pi / 2, math.pi / 2])
    base_side = torch.from_numpy(resample_path(side, 2, 1.0, 0.35))[None]
    b = CriticBatch(paths=[side], base_to_map=base_side,
                    cam_to_map=base_side @ torch.from_numpy(rig.cam_to_base), K_latent=K,
                    depth=torch.full((1, 2, 16, 16), 0.4, dtype=torch.float64),
                    latents=torch.zeros(1, 2, 8, 16, 16))
    clear = float(critic.clearance(b)[0])
    assert 0.39 < clear < 0.41
    assert 0.0 < float(critic.cost(b)[0]) < 1.0  # inside the margin, not a collision


def test_resample_path_steps_evenly_and_holds_the_end():
    p = path([[0, 0], [1, 0], [1, 1]], [0, 0, math.pi / 2])
    poses = resample_path(p, 12, 0.25, 0.35)
    assert poses.shape == (13, 4, 4)
    np.testing.assert_allclose(poses[0, :3, 3], [0, 0, 0])
    np.testing.assert_allclose(poses[4, :3, 3], [1, 0, 0], atol=1e-9)  # 4 x 0.25 m
    # the second leg turns 90 deg while moving 1 m: sqrt(1 + (pi/2 * 0.25/0.35)^2) = 1.50 m of
    # progress, so 12 steps (3 m) reach the end and hold it
    np.testing.assert_allclose(poses[-1, :3, 3], p.positions[-1], atol=1e-9)
    spin = path([[0, 0], [0, 0]], [0, 0.7])  # a turn on the spot advances by step_angle
    yaw = [math.atan2(T[1, 0], T[0, 0]) for T in resample_path(spin, 3, 0.25, 0.35)]
    np.testing.assert_allclose(yaw, [0, 0.35, 0.7, 0.7], atol=1e-9)


def test_clearance_refuses_settings_that_would_switch_it_off():
    with pytest.raises(ValueError, match="min_height 1.5 must be below max_height 1.2"):
        make_critic("clearance", {"min_height": 1.5})
    with pytest.raises(ValueError, match="margin and max_range must be > 0"):
        make_critic("clearance", {"margin": 0.0})

"""Robot motion in the simulator: planning, pure pursuit, tours, candidate fans and their truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mirage_ros.geometry import camera_pose_from_base
from mirage_ros.sim.motion import Limits, PurePursuit, RobotState, integrate, wrap_angle
from mirage_ros.sim.planning import cost_to_go, route, smooth_polyline
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.rig import CameraRig
from mirage_ros.sim.scene import load_scene, procedural_scene
from mirage_ros.sim.tour import tour
from mirage_ros.sim.truth import (
    candidate_fan,
    clearance,
    fan_truth,
    path_base_poses,
    render_path,
)

# A 6 x 4 m room with a 1 x 2 m block in the middle of it.
ROOM = """<mujoco><worldbody>
<geom type="box" size="3 2 0.05" pos="0 0 -0.05"/>
<geom type="box" size="3 0.05 1" pos="0 2.05 1"/>
<geom type="box" size="3 0.05 1" pos="0 -2.05 1"/>
<geom type="box" size="0.05 2.1 1" pos="3.05 0 1"/>
<geom type="box" size="0.05 2.1 1" pos="-3.05 0 1"/>
<geom type="box" size="0.5 1 0.5" pos="0 0 0.5"/>
</worldbody></mujoco>"""


def test_unicycle_integration_follows_arcs_and_limits():
    limits = Limits(max_speed=1.0, max_yaw_rate=1.0, max_accel=100.0, max_yaw_accel=100.0)
    state = RobotState(0.0, 0.0, 0.0, 1.0, 0.5)
    for _ in range(100):
        state = integrate(state, 1.0, 0.5, 0.01, limits)
    # One second on a circle of radius 2 turning left: 0.5 rad.
    assert state.yaw == pytest.approx(0.5)
    assert state.x == pytest.approx(2 * math.sin(0.5)) and state.y == pytest.approx(
        2 * (1 - math.cos(0.5)))
    slow = Limits(max_speed=0.3, max_accel=1.0)
    s = integrate(RobotState(0.0, 0.0, 0.0), 5.0, 0.0, 0.1, slow)
    assert s.v == pytest.approx(0.1)  # acceleration limit first
    for _ in range(20):
        s = integrate(s, 5.0, 0.0, 0.1, slow)
    assert s.v == pytest.approx(0.3)
    assert wrap_angle(3 * math.pi) == pytest.approx(-math.pi)


def test_pure_pursuit_reaches_the_end_of_a_path():
    limits = Limits()
    path = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])
    follower = PurePursuit(path, limits)
    state = RobotState(0.0, 0.0, math.pi)  # facing away: it must turn around first
    for _ in range(1000):
        v, w = follower.command(state)
        state = integrate(state, v, w, 0.05, limits)
        if follower.done:
            break
    assert follower.done
    assert np.linalg.norm(state.xy - path[-1]) < 0.1
    with pytest.raises(ValueError):
        PurePursuit(np.array([[0.0, np.nan]]), limits)


def test_routes_go_around_obstacles_with_clearance():
    scene = load_scene(ROOM)
    grid = scene.clearance_grid(resolution=0.05).coarsen(2)
    field = cost_to_go(grid, (2.0, 0.0), 0.37)
    points = route(grid, (-2.0, 0.0), field)
    assert points is not None
    np.testing.assert_allclose(points[0], (-2.0, 0.0))
    assert np.linalg.norm(points[-1] - (2.0, 0.0)) < 0.1
    smooth = smooth_polyline(points, 0.05, 0.6)
    assert clearance(scene, smooth).min() > 0.3
    assert np.abs(smooth[:, 1]).max() > 1.0  # it had to go round the block
    # A goal inside the block is unreachable.
    assert route(grid, (-2.0, 0.0), cost_to_go(grid, (0.0, 0.0), 0.37)) is None


@pytest.mark.parametrize("seed", [0, 7])
def test_tours_are_smooth_collision_free_and_deterministic(seed):
    scene = procedural_scene(seed)
    limits = Limits(max_speed=0.5, max_yaw_rate=1.0)
    dt = 0.2
    a = tour(scene, 150, dt=dt, seed=seed, robot_radius=0.25, limits=limits)
    b = tour(scene, 150, dt=dt, seed=seed, robot_radius=0.25, limits=limits)
    np.testing.assert_array_equal(a.states, b.states)
    assert len(a) == 150 and a.stamps[1] == pytest.approx(dt)
    steps = np.linalg.norm(np.diff(a.states[:, :2], axis=0), axis=1)
    turns = np.abs([wrap_angle(d) for d in np.diff(a.states[:, 2])])
    assert steps.max() <= limits.max_speed * dt + 1e-9
    assert turns.max() <= limits.max_yaw_rate * dt + 1e-9
    assert steps.sum() > 5.0  # it does go places
    assert clearance(scene, a.states[:, :2]).min() >= 0.25
    poses = a.base_to_map()
    assert poses.shape == (150, 4, 4)
    np.testing.assert_allclose(poses[:, :2, 3], a.states[:, :2])


def test_candidate_fan_truth_sees_the_wall_ahead():
    scene = load_scene(ROOM)
    # Facing the +x wall from 1 m away, between the block and the wall.
    fan = candidate_fan(1.6, -1.3, 0.0, n=5, length=2.0, max_curvature=1.2)
    truth = fan_truth(scene, fan, robot_radius=0.25)
    assert truth.collides[2]  # straight ahead hits the wall
    assert not truth.collides[4]  # the sharpest left turn stays in the room
    assert truth.min_clearance[2] == 0.0 or truth.first_collision[2] > 0
    poses = path_base_poses(fan[2])
    np.testing.assert_allclose(poses[:, 0, 3], np.linspace(1.6, 3.6, 9))


def test_render_path_gives_frames_poses_and_intrinsics():
    scene = load_scene(ROOM)
    rig = CameraRig.create(32, 24, 80.0, 0.5, 5.0)
    fan = candidate_fan(-2.0, -1.5, 0.3, n=1, poses=4, length=1.0)
    with Renderer(scene, rig.camera) as renderer:
        frames = render_path(renderer, rig, path_base_poses(fan[0]))
    assert frames.rgb.shape == (4, 24, 32, 3) and frames.depth.shape == (4, 24, 32)
    assert (frames.depth[:, 12:] > 0).all()  # the floor and walls below the horizon
    assert (frames.depth[0, 0] == 0).any()  # the room has no ceiling: open sky reads as 0
    np.testing.assert_allclose(frames.cam_to_map,
                               camera_pose_from_base(frames.base_to_map, 0.5, math.radians(5)))
    np.testing.assert_allclose(frames.K, rig.camera.K)

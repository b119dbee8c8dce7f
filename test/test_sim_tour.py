"""Robot motion in the simulator: planning, pure pursuit, tours, candidate fans and their truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mirage_ros.geometry import CameraRig, camera_pose_from_base, wrap_angle
from mirage_ros.sim.motion import Limits, PurePursuit, RobotState, integrate
from mirage_ros.sim.planning import cost_to_go, free_regions, route, smooth_polyline
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.robot import SimRobot
from mirage_ros.sim.scene import load_scene, procedural_scene
from mirage_ros.sim.tour import TourPilot, tour
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

# A closed corridor, 8 x 1.4 m inside, walls 10 cm thick, no door. A user scene's free space
# reaches 1 m beyond its geoms, so there is more room to drive *around* this building than in it.
CORRIDOR = """<mujoco><worldbody>
<geom type="box" size="4.1 0.8 0.05" pos="0 0 -0.05"/>
<geom type="box" size="4.1 0.05 0.5" pos="0 0.75 0.5"/>
<geom type="box" size="4.1 0.05 0.5" pos="0 -0.75 0.5"/>
<geom type="box" size="0.05 0.7 0.5" pos="4.05 0 0.5"/>
<geom type="box" size="0.05 0.7 0.5" pos="-4.05 0 0.5"/>
</worldbody></mujoco>"""


def _inside_corridor(xy: np.ndarray) -> np.ndarray:
    return (np.abs(xy[:, 0]) < 4.0) & (np.abs(xy[:, 1]) < 0.7)


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


def test_free_regions_tell_the_inside_of_a_building_from_the_space_around_it():
    scene = load_scene(CORRIDOR)
    pilot = TourPilot(scene, np.random.default_rng(0))
    regions = free_regions(pilot.grid, pilot.min_clearance)
    assert regions.count == 2
    inside = int(regions.labels[tuple(pilot.grid.cell_of((0.0, 0.0)))])
    around = int(regions.labels[tuple(pilot.grid.cell_of((0.0, 1.3)))])
    assert {inside, around} == {1, 2}
    assert regions.enclosed[inside] and not regions.enclosed[around]
    assert regions.sizes[around] > regions.sizes[inside]  # "the largest" would be outside
    assert regions.default() == inside
    # Open ground with two blocks on it: nothing is walled in, so the largest region it is.
    blocks = load_scene('<mujoco><worldbody><geom type="box" size="1 1 0.5" pos="0 0 0.5"/>'
                        '<geom type="box" size="0.3 0.3 0.5" pos="3 0 0.5"/></worldbody></mujoco>')
    pilot = TourPilot(blocks, np.random.default_rng(0))
    regions = free_regions(pilot.grid, pilot.min_clearance)
    assert not regions.enclosed.any()
    assert regions.default() == 1 + int(np.argmax(regions.sizes[1:]))
    assert not SimRobot(blocks).region_enclosed


def test_tours_of_a_closed_building_stay_inside_it():
    scene = load_scene(CORRIDOR)
    a = tour(scene, 200, dt=0.2, seed=0)
    np.testing.assert_array_equal(a.states, tour(scene, 200, dt=0.2, seed=0).states)
    assert _inside_corridor(a.states[:, :2]).all()
    assert np.linalg.norm(np.diff(a.states[:, :2], axis=0), axis=1).sum() > 5.0
    assert clearance(scene, a.states[:, :2]).min() >= 0.25

    # From a given start: the tour begins there and stays in that start's region.
    b = tour(scene, 200, dt=0.2, seed=1, start=(-3.0, 0.2, 0.5))
    np.testing.assert_allclose(b.states[0], (-3.0, 0.2, 0.5))
    assert _inside_corridor(b.states[:, :2]).all()
    assert np.abs(np.diff(b.states[:, 0])).sum() > 3.0
    # A start outside the building keeps the tour outside: the region is the start's own.
    c = tour(scene, 100, dt=0.2, seed=0, start=(0.0, 1.3, 0.0))
    assert not _inside_corridor(c.states[:, :2]).any()
    assert clearance(scene, c.states[:, :2]).min() >= 0.25


def test_a_start_outside_free_space_is_refused_with_a_reason():
    scene = load_scene(CORRIDOR)
    with pytest.raises(ValueError, match=r"start \(0.00, 0.75\) is not in free space"):
        tour(scene, 10, start=(0.0, 0.75, 0.0))  # in the wall
    with pytest.raises(ValueError, match="less than the robot radius"):
        tour(scene, 10, start=(0.0, 0.55, 0.0))  # 15 cm from it
    with pytest.raises(ValueError, match="outside scene"):
        tour(scene, 10, start=(20.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"\(x, y, yaw\)"):
        tour(scene, 10, start=(0.0, 0.0))
    with pytest.raises(ValueError, match="not in free space"):
        SimRobot(scene, start=(4.05, 0.0, 0.0))


def test_sim_robot_tours_from_its_start_pose_and_stays_in_its_region():
    scene = load_scene(CORRIDOR)
    robot = SimRobot(scene, seed=3, start=(2.5, -0.1, math.pi))
    assert robot.region_enclosed
    np.testing.assert_allclose((robot.state.x, robot.state.y, robot.state.yaw),
                               (2.5, -0.1, math.pi))
    xy = np.array([robot.step(0.1, 0.1 * i).state.xy for i in range(1, 400)])
    assert _inside_corridor(xy).all()
    assert np.linalg.norm(xy - (2.5, -0.1), axis=1).max() > 1.0  # it toured, from there
    outside = SimRobot(scene, seed=3, start=(0.0, -1.3, 0.0))
    assert not outside.region_enclosed
    # Without a start it starts inside.
    assert _inside_corridor(SimRobot(scene, seed=3).state.xy[None]).all()

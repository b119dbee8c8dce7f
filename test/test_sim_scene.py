"""Procedural scenes (plans, determinism, loading) and the obstacle geometry behind clearance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mirage_ros.sim.layout import random_floor_plan
from mirage_ros.sim.obstacles import Obstacles, convex_hull
from mirage_ros.sim.procedural import generate_scene
from mirage_ros.sim.scene import CAMERA_NAME, load_scene, procedural_scene
from mirage_ros.sim.truth import clearance


def test_same_seed_same_mjcf_and_different_seeds_differ():
    a, b = generate_scene(11), generate_scene(11)
    assert a.mjcf == b.mjcf
    assert generate_scene(12).mjcf != a.mjcf
    assert a.mjcf.startswith('<mujoco model="mirage_scene_11">')
    # Fast rendering settings are part of every scene.
    assert '<quality shadowsize="512" offsamples="0" />' in a.mjcf


@pytest.mark.parametrize("seed", range(40))
def test_floor_plans_are_connected_and_small(seed):
    plan = random_floor_plan(np.random.default_rng(seed))
    rooms = plan.kinds.count("room")
    assert 2 <= rooms <= 4 and len(plan.regions) - rooms <= 1
    for r, kind in zip(plan.regions, plan.kinds, strict=True):
        if kind == "room":
            assert 3.5 <= min(r.width, r.depth) and max(r.width, r.depth) <= 6.5
        else:  # a corridor runs along up to three rooms
            assert 1.5 <= min(r.width, r.depth) <= 2.5
    # Doors join everything into one building.
    reached, frontier = {0}, [0]
    while frontier:
        i = frontier.pop()
        for door in plan.doorways:
            if i in door.regions:
                j = door.regions[1] if door.regions[0] == i else door.regions[0]
                if j not in reached:
                    reached.add(j)
                    frontier.append(j)
    assert reached == set(range(len(plan.regions)))
    # No wall slab reaches into a doorway below its lintel.
    for piece in plan.wall_pieces():
        for door in plan.doorways:
            if piece.region in door.regions and piece.axis == door.axis \
                    and abs(piece.coord - door.coord) < 1e-9 and piece.z[0] < door.height:
                assert piece.span[1] <= door.span[0] + 1e-9 or piece.span[0] >= door.span[1] - 1e-9


def test_scenes_vary():
    scenes = [generate_scene(s) for s in range(12)]
    assert len({len(s.plan.regions) for s in scenes}) >= 2
    assert len({s.styles for s in scenes}) == 12
    shapes = set()
    for s in scenes:
        shapes |= {line.split('type="')[1].split('"')[0]
                   for line in s.mjcf.splitlines() if "<geom " in line}
    assert {"box", "cylinder", "ellipsoid"} <= shapes


def test_procedural_scene_compiles_with_the_camera():
    scene = procedural_scene(4)
    assert scene.model.cam(scene.camera_id).name == CAMERA_NAME
    assert scene.model.nlight >= 2 and scene.model.ngeom > 50
    assert scene.seed == 4 and len(scene.regions) >= 2


def test_user_scene_from_file(tmp_path):
    path = tmp_path / "room.xml"
    path.write_text("""<mujoco><worldbody>
        <geom type="plane" size="0 0 1"/>
        <geom type="box" size="0.5 0.5 0.5" pos="2 0 0.5"/>
        </worldbody></mujoco>""")
    scene = load_scene(path)
    assert scene.name == "room" and scene.seed is None
    b = scene.bounds
    assert (b.x0, b.y0, b.x1, b.y1) == pytest.approx((0.5, -1.5, 3.5, 1.5))
    with pytest.raises(ValueError, match="already has a camera"):
        load_scene(f'<mujoco><worldbody><camera name="{CAMERA_NAME}"/>'
                   '<geom type="box" size="1 1 1"/></worldbody></mujoco>')


def _box_distance(p, centre, half, yaw):
    """Distance from 2D points to a turned rectangle, in the rectangle's own frame."""
    c, s = math.cos(yaw), math.sin(yaw)
    d = np.asarray(p) - centre
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)
    outside = np.maximum(np.abs(local) - half, 0.0)
    return np.linalg.norm(outside, axis=1)


def test_clearance_matches_a_hand_built_scene():
    yaw = 0.4
    scene = load_scene(f"""<mujoco><compiler angle="radian"/><worldbody>
        <geom type="plane" size="0 0 1"/>
        <geom type="box" size="0.5 0.3 0.4" pos="2 1 0.4" euler="0 0 {yaw}"/>
        <geom type="cylinder" size="0.2 0.3" pos="-1 -1 0.3"/>
        <geom type="box" size="0.5 0.5 0.05" pos="0 3 2.0"/>
        <geom type="box" size="1 1 0.004" pos="0 -3 0.004"/>
        </worldbody></mujoco>""")
    rng = np.random.default_rng(0)
    points = rng.uniform(-3.0, 4.0, size=(500, 2))
    expected = np.minimum(
        _box_distance(points, np.array([2.0, 1.0]), np.array([0.5, 0.3]), yaw),
        np.maximum(np.linalg.norm(points - [-1.0, -1.0], axis=1) - 0.2, 0.0))
    # The box 2 m up (above the robot) and the 4 mm mat (below the band) are not obstacles.
    np.testing.assert_allclose(clearance(scene, points), expected, atol=1e-9)
    assert clearance(scene, np.array([[2.0, 1.0]]))[0] == 0.0
    # The grid used for planning agrees to about one cell.
    grid = scene.clearance_grid()
    inside = (points[:, 0] > scene.bounds.x0) & (points[:, 0] < scene.bounds.x1) \
        & (points[:, 1] > scene.bounds.y0) & (points[:, 1] < scene.bounds.y1)
    from_grid = grid.lookup(points[inside])
    border = np.minimum.reduce([points[inside, 0] - scene.bounds.x0,
                                scene.bounds.x1 - points[inside, 0],
                                points[inside, 1] - scene.bounds.y0,
                                scene.bounds.y1 - points[inside, 1]])
    truth = np.minimum(expected[inside], border)
    assert np.abs(from_grid - truth).max() < 0.08


def test_convex_hull_and_inside_points():
    hull = convex_hull([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5], [1, 0]])
    assert len(hull) == 4
    obstacles = Obstacles((hull,), np.zeros((0, 3)))
    np.testing.assert_allclose(obstacles.distance(np.array([[0.5, 0.5], [2.0, 0.5],
                                                           [2.0, 2.0]])),
                               [0.0, 1.0, math.sqrt(2.0)])

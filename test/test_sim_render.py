"""RGB-D rendering conventions: pose (optical frame), intrinsics (grid-edge K), metric z-depth.

Each test compares MuJoCo's rendering with geometry computed independently here, so a flipped
axis, a half-pixel shift or a wrong depth-buffer formula shows up as a large error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import transforms3d.euler as te

from mirage_ros.geometry import (
    OPTICAL_TO_BODY,
    CameraRig,
    PinholeCamera,
    invert,
    make_transform,
    planar_pose,
    project,
    transform_points,
    unproject,
)
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.scene import load_scene, procedural_scene

# A single large, thin slab: its face at x = 4 is the plane n.X = d with n = +x, d = 4 (map).
WALL = """<mujoco><worldbody>
<geom type="box" size="0.05 30 30" pos="4.05 0 0" rgba="0.6 0.5 0.4 1"/>
</worldbody></mujoco>"""


def _camera_pose(yaw: float, pitch: float, roll: float, position) -> np.ndarray:
    """optical -> map for a body (x forward) turned by yaw, pitch (nose down +), roll."""
    body = make_transform(te.euler2mat(yaw, pitch, roll, "rzyx"), position)
    return body @ OPTICAL_TO_BODY


def _plane_depth(K: np.ndarray, cam_to_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Analytic z-depth of the plane x = 4 seen through every pixel centre."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = unproject(K, np.stack([u, v], -1).reshape(-1, 2), np.ones(u.size))  # z = 1
    R, t = cam_to_map[:3, :3], cam_to_map[:3, 3]
    # Point on the ray at depth z: t + z R r; its x equals 4.
    z = (4.0 - t[0]) / (rays @ R.T)[:, 0]
    return z.reshape(height, width)


@pytest.mark.parametrize("camera", [
    PinholeCamera.from_hfov(math.radians(90.0), 128, 128),
    # Off-centre principal point and a non-square image: the frustum must follow K exactly.
    PinholeCamera(fx=70.0, fy=70.0, cx=50.3, cy=70.2, width=160, height=96),
])
def test_depth_of_a_tilted_plane_matches_geometry(camera):
    scene = load_scene(WALL)
    pose = _camera_pose(yaw=0.3, pitch=-0.2, roll=0.15, position=[0.5, -0.4, 1.0])
    with Renderer(scene, camera) as renderer:
        rgb, depth = renderer.render(pose)
    expected = _plane_depth(camera.K, pose, camera.height, camera.width)
    assert rgb.shape == (camera.height, camera.width, 3) and rgb.dtype == np.uint8
    assert depth.shape == (camera.height, camera.width) and depth.dtype == np.float32
    # z along the optical axis, not range: a tilted plane has a depth gradient and we match it
    # pixel by pixel, to well under a millimetre at 3-5 m.
    np.testing.assert_allclose(depth, expected, atol=2e-3)
    assert expected.max() - expected.min() > 1.0


# The same wall, 3 m high, in a model with a skybox: above the wall the camera sees sky.
SKY_WALL = """<mujoco><asset><texture name="sky" type="skybox" builtin="gradient"
 rgb1="0.4 0.6 0.8" rgb2="0 0 0" width="64" height="64"/></asset><worldbody>
<geom type="box" size="0.05 30 1.5" pos="4.05 0 1.5" rgba="0.6 0.5 0.4 1"/>
</worldbody></mujoco>"""


@pytest.mark.parametrize("camera", [
    PinholeCamera.from_hfov(math.radians(90.0), 128, 128),
    PinholeCamera(fx=40.0, fy=40.0, cx=20.0, cy=70.0, width=160, height=96),  # wide, off-centre
])
@pytest.mark.parametrize("pitch", [-0.6, -0.2, 0.2])
def test_sky_of_a_skybox_reads_as_nothing_hit(camera, pitch):
    """MuJoCo draws a skybox as a shell that writes depth tens of metres out; that is no
    surface. Sky pixels must read 0 (like a model without a skybox), the wall must not move,
    and the sky must look like sky in the colour image (the skybox is still drawn)."""
    pose = _camera_pose(yaw=0.2, pitch=pitch, roll=0.0, position=[0.5, -0.4, 1.0])
    expected = _plane_depth(camera.K, pose, camera.height, camera.width)
    # Where the ray meets the wall plane between its foot (0 m) and top (3 m), the wall is seen;
    # pixels within a centimetre of an edge count as neither.
    u, v = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    rays = unproject(camera.K, np.stack([u, v], -1).reshape(-1, 2), np.ones(u.size))
    height_at_wall = 1.0 + expected.ravel() * (rays @ pose[:3, :3].T)[:, 2]
    hit = expected.ravel() > 0
    wall = (hit & (height_at_wall > 0.01) & (height_at_wall < 2.99)).reshape(expected.shape)
    sky = (~hit | (height_at_wall > 3.01) | (height_at_wall < -0.01)).reshape(expected.shape)
    assert wall.any() and sky.any()
    with Renderer(load_scene(SKY_WALL), camera) as renderer:
        assert renderer.sky_depth is not None
        rgb, depth = renderer.render(pose)
    np.testing.assert_allclose(depth[wall], expected[wall], atol=2e-3)
    assert (depth[sky] == 0).all()
    assert rgb[sky].mean() > 5  # drawn, not the black clear colour
    with Renderer(load_scene(WALL), camera) as renderer:
        assert renderer.sky_depth is None  # no skybox: no depth limit


def test_depth_conversion_uses_near_and_far():
    scene = load_scene(WALL)
    camera = PinholeCamera.from_hfov(math.radians(60.0), 32, 32)
    pose = _camera_pose(0.0, 0.0, 0.0, [1.0, 0.0, 0.0])
    for near, far in ((0.05, 100.0), (0.5, 10.0)):
        with Renderer(scene, camera, near=near, far=far) as renderer:
            _, depth = renderer.render(pose)
            # Fronto-parallel at 3 m: every pixel has z = 3 whatever the clip planes are.
            np.testing.assert_allclose(depth, 3.0, atol=1e-3)
            # The buffer mapping itself: 1 is the near plane, 0 (cleared) is "nothing hit".
            np.testing.assert_allclose(renderer.buffer_to_depth(np.array([1.0, 0.0])),
                                       [near, 0.0], rtol=1e-6)
    with Renderer(scene, camera, far=2.0) as renderer:
        _, depth = renderer.render(pose)
    assert (depth == 0.0).all()  # beyond the far plane: no depth


def test_a_point_projects_where_the_camera_sees_it():
    point = np.array([3.0, 0.4, 1.3])
    scene = load_scene(f"""<mujoco><worldbody>
        <geom type="sphere" size="0.05" pos="{point[0]} {point[1]} {point[2]}"/>
        </worldbody></mujoco>""")
    camera = PinholeCamera(fx=100.0, fy=100.0, cx=60.0, cy=70.0, width=128, height=128)
    pose = _camera_pose(yaw=0.05, pitch=-0.1, roll=0.1, position=[0.2, 0.1, 1.0])
    with Renderer(scene, camera) as renderer:
        _, depth = renderer.render(pose)
    vs, us = np.nonzero(depth > 0)
    centroid = np.array([us.mean() + 0.5, vs.mean() + 0.5])  # pixel centres, grid-edge
    expected = project(camera.K, transform_points(invert(pose), point[None]))[0]
    # Right of and above the optical axis in the map must be right of and above in the image.
    np.testing.assert_allclose(centroid, expected, atol=0.5)


def test_two_views_agree_on_the_3d_scene():
    """Unproject view A's depth into the map, project into view B, compare with B's depth."""
    scene = procedural_scene(3)
    rig = CameraRig.create(128, 128, 90.0, 0.5, 10.0)
    grid = scene.clearance_grid()
    cells = np.argwhere(grid.clearance > 1.0)
    xy = grid.center_of(cells)
    # A spot inside the building (an L-shaped plan has open space outside its walls too).
    indoors = np.zeros(len(xy), dtype=bool)
    for r in scene.regions:
        indoors |= (xy[:, 0] > r.x0) & (xy[:, 0] < r.x1) & (xy[:, 1] > r.y0) & (xy[:, 1] < r.y1)
    x, y = xy[indoors][int(indoors.sum()) // 2]
    base_a = planar_pose(x, y, 0.7)
    base_b = planar_pose(x + 0.25 * math.cos(0.7), y + 0.25 * math.sin(0.7), 0.85)
    cam_a, cam_b = rig.cam_to_map(base_a), rig.cam_to_map(base_b)
    with Renderer(scene, rig.camera) as renderer:
        _, depth_a = renderer.render(cam_a)
        _, depth_b = renderer.render(cam_b)
    h, w = depth_a.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    valid = depth_a.ravel() > 0
    uv = np.stack([u, v], -1).reshape(-1, 2)[valid]
    points_map = transform_points(cam_a, unproject(rig.camera.K, uv, depth_a.ravel()[valid]))
    in_b = transform_points(invert(cam_b), points_map)
    uv_b = project(rig.camera.K, in_b)
    cells = np.floor(uv_b).astype(int)
    inside = np.isfinite(uv_b).all(1) & (cells[:, 0] >= 0) & (cells[:, 0] < w) \
        & (cells[:, 1] >= 0) & (cells[:, 1] < h)
    observed = depth_b[cells[inside, 1], cells[inside, 0]]
    error = np.abs(observed - in_b[inside, 2])
    assert inside.sum() > 0.5 * h * w
    # Occlusions and depth edges give some large errors; the bulk must agree to millimetres.
    assert np.median(error) < 0.02
    assert np.mean(error < 0.05) > 0.9


def test_rendering_is_deterministic_per_seed():
    rig = CameraRig.create(64, 64)
    frames = []
    for _ in range(2):
        scene = procedural_scene(5)
        x, y = scene.regions[0].center
        with Renderer(scene, rig.camera) as renderer:
            frames.append(renderer.render(rig.cam_to_map(planar_pose(x, y, 1.0))))
    assert frames[0][0].tobytes() == frames[1][0].tobytes()
    assert frames[0][1].tobytes() == frames[1][1].tobytes()


def test_frustum_culling_changes_nothing_in_the_image():
    scene = procedural_scene(6)
    rig = CameraRig.create(64, 64)
    poses = [rig.cam_to_map(planar_pose(*r.center, yaw)) for r in scene.regions
             for yaw in (0.0, 2.0, 4.0)]
    groups = scene.model.geom_group.copy()
    with Renderer(scene, rig.camera, cull=True) as culled, \
            Renderer(scene, rig.camera, cull=False) as full:
        for pose in poses:
            a, b = culled.render(pose), full.render(pose)
            assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    np.testing.assert_array_equal(scene.model.geom_group, groups)


def test_renderer_refuses_non_square_pixels_and_bad_poses():
    scene = load_scene(WALL)
    with pytest.raises(ValueError, match="square pixels"):
        Renderer(scene, PinholeCamera(100.0, 90.0, 32.0, 32.0, 64, 64))
    with Renderer(scene, PinholeCamera.from_hfov(1.0, 16, 16)) as renderer:
        with pytest.raises(ValueError, match="finite 4x4"):
            renderer.render(np.full((4, 4), np.nan))

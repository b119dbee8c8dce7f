"""Tests for mirage_ros.geometry against hand-computed values and a few properties."""

import math

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mirage_ros.geometry import (
    BODY_TO_OPTICAL,
    OPTICAL_TO_BODY,
    PinholeCamera,
    camera_link_to_base,
    camera_pose_from_base,
    cell_index,
    compose,
    intrinsics_matrix,
    invert,
    is_unit_quat,
    k_from_ros,
    k_to_ros,
    make_transform,
    matrix_to_quat_wxyz,
    matrix_to_quat_xyzw,
    normalize_quat,
    pixel_centers,
    planar_pose,
    plucker_rays,
    project,
    quat_wxyz_to_matrix,
    quat_wxyz_to_xyzw,
    quat_xyzw_to_matrix,
    quat_xyzw_to_wxyz,
    rotate_vectors,
    scale_intrinsics,
    transform_from_translation_quat_xyzw,
    transform_points,
    transform_to_translation_quat_xyzw,
    unproject,
)

S45 = math.sqrt(0.5)  # sin 45° = cos 45°
# Rotation of +90° about z: x -> y, y -> -x.
RZ90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])

# --- strategies ---------------------------------------------------------------------------------

finite = {"allow_nan": False, "allow_infinity": False}


@st.composite
def quaternions_xyzw(draw: st.DrawFn) -> np.ndarray:
    q = np.array(draw(st.lists(st.floats(-1.0, 1.0, **finite), min_size=4, max_size=4)))
    assume(np.linalg.norm(q) > 0.1)
    return q / np.linalg.norm(q)


@st.composite
def poses(draw: st.DrawFn) -> np.ndarray:
    t = draw(st.lists(st.floats(-50.0, 50.0, **finite), min_size=3, max_size=3))
    return transform_from_translation_quat_xyzw(t, draw(quaternions_xyzw()))


@st.composite
def cameras(draw: st.DrawFn) -> PinholeCamera:
    width = draw(st.integers(1, 1024))
    height = draw(st.integers(1, 1024))
    return PinholeCamera(
        fx=draw(st.floats(1.0, 2000.0)),
        fy=draw(st.floats(1.0, 2000.0)),
        cx=draw(st.floats(-100.0, 1100.0)),
        cy=draw(st.floats(-100.0, 1100.0)),
        width=width,
        height=height,
    )


# --- pinhole camera -----------------------------------------------------------------------------


def test_hfov_90_128_camera_is_centred_with_f_64():
    # tan(45°) = 1, so fx = (128 / 2) / 1 = 64; centred: cx = 128 / 2, cy = 96 / 2.
    cam = PinholeCamera.from_hfov(math.pi / 2, width=128, height=96)
    assert cam.fx == pytest.approx(64.0)
    assert cam.fy == pytest.approx(64.0)
    assert (cam.cx, cam.cy) == (64.0, 48.0)
    np.testing.assert_allclose(cam.K, [[64, 0, 64], [0, 64, 48], [0, 0, 1]])


def test_scaling_to_latent_is_pure_multiplication():
    # 128 -> 16 is a factor 1/8 on every entry: fx = 64 / 8 = 8, cx = 64 / 8 = 8.
    latent = PinholeCamera.from_hfov(math.pi / 2, 128, 128).scaled(16, 16)
    assert (latent.width, latent.height) == (16, 16)
    assert latent.fx == pytest.approx(8.0)
    assert latent.fy == pytest.approx(8.0)
    assert (latent.cx, latent.cy) == (8.0, 8.0)


def test_anisotropic_scaling_uses_each_axis_factor():
    # 128 wide x 96 high -> 16 x 16: x factor 16/128 = 1/8, y factor 16/96 = 1/6.
    K = intrinsics_matrix(64.0, 60.0, 64.0, 48.0)
    np.testing.assert_allclose(
        scale_intrinsics(K, (96, 128), (16, 16)), [[8, 0, 8], [0, 10, 8], [0, 0, 1]]
    )


def test_pixel_centres_are_half_integers():
    # Cell (u, v) covers [u, u+1) x [v, v+1); grid is indexed [v, u] and holds (u, v).
    expected = [
        [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5]],
        [[0.5, 1.5], [1.5, 1.5], [2.5, 1.5]],
    ]
    np.testing.assert_array_equal(pixel_centers(2, 3), expected)
    np.testing.assert_array_equal(PinholeCamera(1, 1, 1.5, 1, 3, 2).pixel_centers(), expected)


def test_cell_index_floors():
    # The right edge of cell 0 (u = 1.0) already belongs to cell 1; negatives floor downwards.
    np.testing.assert_array_equal(
        cell_index([[0.0, 0.999], [1.0, 15.5], [-0.1, 16.0]]), [[0, 0], [1, 15], [-1, 16]]
    )


def test_unproject_latent_cell_00_at_depth_2():
    # fx = cx = 8 at 16x16; centre of cell (0, 0) is (0.5, 0.5):
    # x = (0.5 - 8) / 8 * 2 = -1.875, likewise y; z is the depth itself.
    latent = PinholeCamera.from_hfov(math.pi / 2, 16, 16)
    np.testing.assert_allclose(latent.unproject([[0.5, 0.5]], [2.0]), [[-1.875, -1.875, 2.0]])


def test_latent_cell_centre_sees_the_centre_of_its_pixel_block():
    # Latent cell 0 spans pixels [0, 8); its centre 0.5 * 8 = 4 is the block centre. Both give
    # x / z = (0.5 - 8) / 8 = (4 - 64) / 64 = -0.9375.
    pixel = PinholeCamera.from_hfov(math.pi / 2, 128, 128)
    latent = pixel.scaled(16, 16)
    np.testing.assert_allclose(latent.unproject([[0.5, 0.5]], [1.0]), [[-0.9375, -0.9375, 1.0]])
    np.testing.assert_allclose(pixel.unproject([[4.0, 4.0]], [1.0]), [[-0.9375, -0.9375, 1.0]])


def test_project_hand_computed():
    # u = 64 * 1 / 2 + 64 = 96, v = 64 * (-0.5) / 2 + 64 = 48.
    cam = PinholeCamera.from_hfov(math.pi / 2, 128, 128)
    np.testing.assert_allclose(cam.project([[1.0, -0.5, 2.0]]), [[96.0, 48.0]])


def test_project_behind_or_on_camera_plane_is_nan():
    K = intrinsics_matrix(64.0, 64.0, 64.0, 64.0)
    uv = project(K, [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, -1.0], [0.0, 0.0, np.nan]])
    np.testing.assert_allclose(uv[0], [64.0, 64.0])
    assert np.isnan(uv[1:]).all()


def test_batched_k_projects_each_camera():
    # The same point (1, 1, 2) through fx = 64 / cx = 64 and fx = 8 / cx = 8:
    # 64 * 0.5 + 64 = 96 and 8 * 0.5 + 8 = 12.
    K = np.stack([intrinsics_matrix(64, 64, 64, 64), intrinsics_matrix(8, 8, 8, 8)])
    uv = project(K, np.array([[[1.0, 1.0, 2.0]], [[1.0, 1.0, 2.0]]]))
    np.testing.assert_allclose(uv, [[[96.0, 96.0]], [[12.0, 12.0]]])
    # Unprojecting [2, N, 2] with [2, N] depths returns the point for both cameras.
    np.testing.assert_allclose(unproject(K, uv, [[2.0], [2.0]]), [[[1, 1, 2]], [[1, 1, 2]]])


def test_ros_k_has_principal_point_half_a_pixel_lower():
    # A centred 640x480 camera in ROS has cx = 319.5, cy = 239.5 (centre of pixel 0 is 0).
    k_ros = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    cam = PinholeCamera.from_ros_k(k_ros, width=640, height=480)
    assert (cam.cx, cam.cy) == (320.0, 240.0)
    np.testing.assert_allclose(cam.ros_k().ravel(), k_ros)
    np.testing.assert_allclose(k_to_ros(k_from_ros(k_ros)), np.reshape(k_ros, (3, 3)))


def test_ros_k_scaling_goes_through_our_convention():
    # 640 -> 80 (1/8): ours 320 -> 40, i.e. ROS 39.5, the centre of an 80-wide ROS image.
    # Scaling ROS cx directly would give 319.5 / 8 = 39.9375, off by 0.4375 px.
    cam = PinholeCamera.from_ros_k([500, 0, 319.5, 0, 500, 239.5, 0, 0, 1], 640, 480)
    np.testing.assert_allclose(
        cam.scaled(60, 80).ros_k(), [[62.5, 0, 39.5], [0, 62.5, 29.5], [0, 0, 1]]
    )


def test_ros_convention_matches_opencv_projection():
    # OpenCV puts pixel centres at integers, so its u is ours minus 0.5.
    k_ros = np.array([[500.0, 0.0, 300.2], [0.0, 480.0, 251.7], [0.0, 0.0, 1.0]])
    points = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0]])
    uv_cv, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), k_ros, None)
    ours = PinholeCamera.from_ros_k(k_ros, 640, 480).project(points)
    np.testing.assert_allclose(ours, uv_cv.reshape(-1, 2) + 0.5)


def test_invalid_intrinsics_are_rejected():
    with pytest.raises(ValueError, match="focal"):
        PinholeCamera(fx=0.0, fy=1.0, cx=0.0, cy=0.0, width=4, height=4)
    with pytest.raises(ValueError, match="size"):
        PinholeCamera(fx=1.0, fy=1.0, cx=0.0, cy=0.0, width=0, height=4)
    with pytest.raises(ValueError, match="finite"):
        PinholeCamera(fx=1.0, fy=1.0, cx=np.nan, cy=0.0, width=4, height=4)
    with pytest.raises(ValueError, match="hfov"):
        PinholeCamera.from_hfov(math.pi, 4, 4)
    with pytest.raises(ValueError, match="K must be"):
        PinholeCamera.from_k([[1, 0.1, 2], [0, 1, 2], [0, 0, 1]], 4, 4)
    with pytest.raises(ValueError, match="shape"):
        k_from_ros([1.0, 2.0, 3.0])


@settings(max_examples=200, deadline=None)
@given(cam=cameras(), u=st.floats(-500, 1500), v=st.floats(-500, 1500), z=st.floats(0.01, 100))
def test_project_inverts_unproject(cam: PinholeCamera, u: float, v: float, z: float):
    point = cam.unproject([[u, v]], [z])
    assert point[0, 2] == pytest.approx(z)
    np.testing.assert_allclose(cam.project(point), [[u, v]], rtol=1e-9, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(cam=cameras(), h=st.integers(1, 512), w=st.integers(1, 512), z=st.floats(0.1, 10))
def test_scaling_keeps_every_cell_centre_ray(cam: PinholeCamera, h: int, w: int, z: float):
    # Cell centre (u + 0.5) * w / W of the resized grid is the same continuous image point.
    small = cam.scaled(h, w)
    centres = pixel_centers(h, w).reshape(-1, 2)
    in_original = centres * [cam.width / w, cam.height / h]
    np.testing.assert_allclose(
        small.unproject(centres, np.full(len(centres), z)),
        cam.unproject(in_original, np.full(len(centres), z)),
        rtol=1e-9,
        atol=1e-9,
    )


# --- SE(3) and quaternions ----------------------------------------------------------------------


def test_quaternion_of_90_degree_yaw_in_both_orders():
    # q = (axis * sin(θ/2), cos(θ/2)) with axis z, θ = 90°.
    np.testing.assert_allclose(matrix_to_quat_xyzw(RZ90), [0.0, 0.0, S45, S45])
    np.testing.assert_allclose(matrix_to_quat_wxyz(RZ90), [S45, 0.0, 0.0, S45])
    np.testing.assert_allclose(quat_xyzw_to_matrix([0.0, 0.0, S45, S45]), RZ90, atol=1e-15)
    np.testing.assert_allclose(quat_wxyz_to_matrix([S45, 0.0, 0.0, S45]), RZ90, atol=1e-15)


def test_quaternion_of_180_degrees_about_x():
    # θ = 180° about x: q_xyzw = (1, 0, 0, 0), R = diag(1, -1, -1). Confusing orders would read
    # this as the identity, which is why the order is in every name.
    np.testing.assert_allclose(quat_xyzw_to_matrix([1.0, 0.0, 0.0, 0.0]), np.diag([1, -1, -1]))
    np.testing.assert_allclose(quat_wxyz_to_matrix([1.0, 0.0, 0.0, 0.0]), np.eye(3))


def test_quaternion_reordering():
    np.testing.assert_array_equal(quat_xyzw_to_wxyz([1, 2, 3, 4]), [4, 1, 2, 3])
    np.testing.assert_array_equal(quat_wxyz_to_xyzw([4, 1, 2, 3]), [1, 2, 3, 4])
    np.testing.assert_array_equal(quat_xyzw_to_wxyz([[1, 2, 3, 4]]), [[4, 1, 2, 3]])


def test_matrix_to_quaternion_prefers_positive_w():
    # -q is the same rotation; the output is canonical with w >= 0.
    R = quat_xyzw_to_matrix([0.0, 0.0, -S45, -S45])
    np.testing.assert_allclose(matrix_to_quat_xyzw(R), [0.0, 0.0, S45, S45])


def test_quaternion_normalisation_and_unit_check():
    np.testing.assert_array_equal(normalize_quat([0.0, 0.0, 0.0, 2.0]), [0, 0, 0, 1])
    np.testing.assert_allclose(normalize_quat([[3.0, 0, 0, 4.0]]), [[0.6, 0, 0, 0.8]])
    assert is_unit_quat([0.0, 0.0, 0.0, 1.0005])  # within the 1e-3 default
    assert not is_unit_quat([0.0, 0.0, 0.0, 1.01])
    assert is_unit_quat([0.0, 0.0, 0.0, 1.01], tol=0.02)
    assert not is_unit_quat([0.0, 0.0, 0.0, 0.0])
    assert not is_unit_quat([np.nan, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(is_unit_quat([[0, 0, 0, 1], [0, 0, 0, 3]]), [True, False])
    for bad in ([0.0, 0.0, 0.0, 0.0], [np.inf, 0.0, 0.0, 1.0]):
        with pytest.raises(ValueError, match="normalise"):
            normalize_quat(bad)
    with pytest.raises(ValueError, match="normalise"):
        quat_xyzw_to_matrix([0.0, 0.0, 0.0, 0.0])


def test_non_unit_quaternion_converts_as_its_normalised_rotation():
    np.testing.assert_allclose(quat_xyzw_to_matrix([0.0, 0.0, 2 * S45, 2 * S45]), RZ90, atol=1e-15)


def test_transform_points_hand_computed():
    # Base at (1, 2, 0) facing +y: a point 1 m ahead of it is at (1, 3, 0) in the map.
    base_to_map = planar_pose(1.0, 2.0, math.pi / 2)
    np.testing.assert_allclose(
        transform_points(base_to_map, [[1.0, 0.0, 0.0], [0.0, 0.0, 0.5]]),
        [[1.0, 3.0, 0.0], [1.0, 2.0, 0.5]],
        atol=1e-15,
    )
    heading = rotate_vectors(base_to_map, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(heading, [[0.0, 1.0, 0.0]], atol=1e-15)


def test_compose_reads_right_to_left():
    # b_to_c = shift x by 1, a_to_b = yaw 90°: (1, 0, 0)_a -> (0, 1, 0)_b -> (1, 1, 0)_c.
    a_to_c = compose(planar_pose(1.0, 0.0, 0.0), planar_pose(0.0, 0.0, math.pi / 2))
    np.testing.assert_allclose(transform_points(a_to_c, [[1, 0, 0]]), [[1, 1, 0]], atol=1e-15)


def test_planar_pose_matches_yaw_quaternion_and_batches():
    T = planar_pose([0.0, 1.0], [0.0, 2.0], [0.0, math.pi / 2], z=0.5)
    assert T.shape == (2, 4, 4)
    np.testing.assert_allclose(T[1, :3, :3], quat_xyzw_to_matrix([0, 0, S45, S45]), atol=1e-15)
    np.testing.assert_allclose(T[:, :3, 3], [[0.0, 0.0, 0.5], [1.0, 2.0, 0.5]])


def test_translation_quaternion_round_trip_hand_computed():
    T = transform_from_translation_quat_xyzw([1.0, 2.0, 3.0], [0.0, 0.0, S45, S45])
    np.testing.assert_allclose(T, make_transform(RZ90, [1.0, 2.0, 3.0]), atol=1e-15)
    t, q = transform_to_translation_quat_xyzw(T)
    np.testing.assert_allclose(t, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(q, [0.0, 0.0, S45, S45])


def test_shape_errors_are_value_errors():
    with pytest.raises(ValueError, match=r"\[\.\.\., 4, 4\]"):
        invert(np.eye(3))
    with pytest.raises(ValueError, match=r"\[\.\.\., N, 3\]"):
        transform_points(np.eye(4), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="quaternions"):
        quat_xyzw_to_matrix([0.0, 0.0, 1.0])


@settings(max_examples=100, deadline=None)
@given(T=poses(), points=st.lists(st.floats(-100, 100), min_size=3, max_size=30))
def test_inverse_undoes_pose(T: np.ndarray, points: list[float]):
    p = np.reshape(points[: len(points) // 3 * 3], (-1, 3))
    np.testing.assert_allclose(invert(T) @ T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(compose(T, invert(T)), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(transform_points(invert(T), transform_points(T, p)), p, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(q=quaternions_xyzw(), t=st.lists(st.floats(-10, 10), min_size=3, max_size=3))
def test_translation_quaternion_round_trip(q: np.ndarray, t: list[float]):
    t_back, q_back = transform_to_translation_quat_xyzw(transform_from_translation_quat_xyzw(t, q))
    np.testing.assert_allclose(t_back, t)
    # Same rotation up to the sign of q (both signs have w >= 0 when w = 0); output has w >= 0.
    assert q_back[3] >= 0.0
    assert min(np.abs(q_back - q).max(), np.abs(q_back + q).max()) < 1e-9


def test_batched_invert_and_transform_points():
    T = planar_pose([1.0, -2.0, 0.0], [0.5, 3.0, 1.0], [0.3, -1.0, 2.0])
    points = np.random.default_rng(0).normal(size=(3, 5, 3))
    out = transform_points(T, points)
    for i in range(3):
        np.testing.assert_allclose(out[i], transform_points(T[i], points[i]))
        np.testing.assert_allclose(invert(T)[i], np.linalg.inv(T[i]), atol=1e-12)


# --- REP-103 frames -----------------------------------------------------------------------------


def test_optical_axes_in_body_frame():
    # Columns of optical->body: optical x (right) = -y, y (down) = -z, z (forward) = +x.
    np.testing.assert_array_equal(OPTICAL_TO_BODY[:3, 2], [1, 0, 0])
    np.testing.assert_array_equal(OPTICAL_TO_BODY[:3, 0], [0, -1, 0])
    np.testing.assert_array_equal(OPTICAL_TO_BODY[:3, 1], [0, 0, -1])
    assert np.linalg.det(OPTICAL_TO_BODY[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_array_equal(BODY_TO_OPTICAL @ OPTICAL_TO_BODY, np.eye(4))
    with pytest.raises(ValueError, match="read-only"):
        OPTICAL_TO_BODY[0, 0] = 1.0  # shared constants are read-only


def test_camera_pitched_30_degrees_sees_floor_at_h_over_tan30():
    # Optical axis from (0, 0, 1.2) going (cos30, 0, -sin30) meets z = 0 after
    # x = 1.2 / tan 30° = 1.2 * sqrt(3) = 2.0784609690826525.
    optical_to_map = camera_pose_from_base(np.eye(4), height=1.2, pitch=math.radians(30))
    origin, axis = optical_to_map[:3, 3], optical_to_map[:3, 2]
    np.testing.assert_allclose(origin, [0.0, 0.0, 1.2])
    hit = origin + axis * (-origin[2] / axis[2])
    np.testing.assert_allclose(hit, [2.0784609690826525, 0.0, 0.0], atol=1e-12)
    # And the floor point projects to the principal point.
    cam = PinholeCamera.from_hfov(math.pi / 2, 128, 128)
    uv = cam.project(transform_points(invert(optical_to_map), [hit]))
    np.testing.assert_allclose(uv, [[64.0, 64.0]], atol=1e-9)


def test_camera_pose_follows_a_yawed_base():
    # Base at (1, 2) facing +y: the same floor hit is 2.078... m along +y.
    optical_to_map = camera_pose_from_base(
        planar_pose(1.0, 2.0, math.pi / 2), height=1.2, pitch=math.radians(30)
    )
    origin, axis = optical_to_map[:3, 3], optical_to_map[:3, 2]
    hit = origin + axis * (-origin[2] / axis[2])
    np.testing.assert_allclose(hit, [1.0, 2.0 + 2.0784609690826525, 0.0], atol=1e-12)


def test_image_orientation_left_and_up():
    # Level camera at 1 m looking along +x: a point to the left (+y) lands left of the centre
    # (u < cx), a point above (+z) lands above it (v < cy).
    optical_to_map = camera_pose_from_base(np.eye(4), height=1.0, pitch=0.0)
    cam = PinholeCamera.from_hfov(math.pi / 2, 128, 128)
    # (5, 1, 1): optical (x, y, z) = (-1, 0, 5) -> u = 64 * (-1 / 5) + 64 = 51.2, v = 64.
    # (5, 0, 2): optical (0, -1, 5) -> u = 64, v = 64 * (-1 / 5) + 64 = 51.2.
    uv = cam.project(transform_points(invert(optical_to_map), [[5, 1, 1], [5, 0, 2]]))
    np.testing.assert_allclose(uv, [[51.2, 64.0], [64.0, 51.2]], atol=1e-9)


def test_mount_offsets_and_batching():
    mount = camera_link_to_base(height=0.5, pitch=0.0, x_offset=0.3, y_offset=-0.1)
    np.testing.assert_allclose(mount, make_transform(np.eye(3), [0.3, -0.1, 0.5]))
    bases = planar_pose(np.arange(4.0), 0.0, 0.0)
    cams = camera_pose_from_base(bases, height=0.5, pitch=0.2, x_offset=0.3)
    assert cams.shape == (4, 4, 4)
    # Pitch turns the camera but leaves its origin at base + (0.3, 0, 0.5).
    np.testing.assert_allclose(
        cams[:, :3, 3], [[0.3, 0, 0.5], [1.3, 0, 0.5], [2.3, 0, 0.5], [3.3, 0, 0.5]]
    )


# --- Plücker rays -------------------------------------------------------------------------------


def test_plucker_hand_computed_2x2():
    # fx = fy = 2, cx = cy = 1. Cell (0, 0) centre (0.5, 0.5) -> ray (-0.25, -0.25, 1),
    # |ray| = sqrt(1.125), d = (-0.23570226, -0.23570226, 0.94280904).
    # Camera at o = (1, 0, 0): m = o x d = (0, -d_z, d_y) = (0, -0.94280904, -0.23570226).
    rays = plucker_rays(intrinsics_matrix(2, 2, 1, 1), make_transform(np.eye(3), [1, 0, 0]), 2, 2)
    assert rays.shape == (6, 2, 2)
    d = [-0.25 / math.sqrt(1.125), -0.25 / math.sqrt(1.125), 1 / math.sqrt(1.125)]
    np.testing.assert_allclose(rays[:, 0, 0], d + [0.0, -d[2], d[1]])
    # Cell (1, 0) (u = 1, v = 0): centre (1.5, 0.5) -> ray (0.25, -0.25, 1).
    np.testing.assert_allclose(rays[:3, 0, 1], [-d[0], d[1], d[2]])


def test_plucker_camera_at_origin_has_zero_moment():
    K = PinholeCamera.from_hfov(math.pi / 2, 128, 128).scaled(16, 16).K
    rays = plucker_rays(K, np.eye(4), 16, 16)
    assert rays.shape == (6, 16, 16)
    np.testing.assert_array_equal(rays[3:], 0.0)
    # Channel 0 is d_x: negative at the left column, positive at the right; d_z > 0 everywhere.
    assert (rays[0, :, 0] < 0).all() and (rays[0, :, -1] > 0).all()
    assert (rays[2] > 0).all()


def test_plucker_batches_over_poses():
    K = intrinsics_matrix(8, 8, 8, 8)
    bases = planar_pose([0.0, 1.0, 2.0], [0.0, -1.0, 3.0], [0.0, 1.0, -2.0])
    T = camera_pose_from_base(bases, height=0.4, pitch=0.1)
    batch = plucker_rays(K, T, 16, 16)
    assert batch.shape == (3, 6, 16, 16)
    for i in range(3):
        np.testing.assert_allclose(batch[i], plucker_rays(K, T[i], 16, 16))


@settings(max_examples=50, deadline=None)
@given(T=poses(), cam=cameras())
def test_plucker_directions_unit_and_orthogonal_to_moment(T: np.ndarray, cam: PinholeCamera):
    small = cam.scaled(5, 7)
    rays = plucker_rays(small.K, T, 5, 7)
    d, m = rays[:3], rays[3:]
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.sum(d * m, axis=0), 0.0, atol=1e-9)
    # The moment does not depend on where along the ray the origin is taken.
    moved = T.copy()
    moved[:3, 3] += 3.7 * d[:, 2, 3]
    np.testing.assert_allclose(plucker_rays(small.K, moved, 5, 7)[3:, 2, 3], m[:, 2, 3], atol=1e-9)

"""Rigid transforms (SE(3)) as 4x4 homogeneous matrices, and quaternions.

Naming convention (used across mirage_ros)
------------------------------------------
``a_to_b`` is the transform that maps coordinates of a point expressed in frame ``a`` to frame
``b``: ``p_b = a_to_b @ p_a``. It is also the pose of frame ``a`` in frame ``b`` (its rotation
columns are ``a``'s axes in ``b``, its translation is ``a``'s origin in ``b``), which is what tf2's
``lookup_transform(target_frame=b, source_frame=a)`` returns. Chains read right to left:
``cam_to_map = base_to_map @ cam_to_base``.

Transforms are float64 arrays ``[..., 4, 4]``; every function broadcasts over the leading
dimensions. Points are ``[..., N, 3]``.

Quaternion order
----------------
transforms3d uses ``(w, x, y, z)``; ROS messages (``geometry_msgs/Quaternion``) use
``(x, y, z, w)``. Every quaternion function names its order explicitly; nothing here guesses.
Quaternions returned by this module are unit length with ``w >= 0`` (``q`` and ``-q`` are the same
rotation; the sign is fixed so outputs are reproducible).
"""

from __future__ import annotations

import numpy as np
import transforms3d.quaternions as t3q
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "QUAT_UNIT_TOLERANCE",
    "compose",
    "interpolate_transform",
    "invert",
    "is_unit_quat",
    "make_transform",
    "matrix_to_quat_wxyz",
    "matrix_to_quat_xyzw",
    "normalize_quat",
    "planar_pose",
    "quat_wxyz_to_matrix",
    "quat_wxyz_to_xyzw",
    "quat_xyzw_to_matrix",
    "quat_xyzw_to_wxyz",
    "rotate_vectors",
    "slerp",
    "transform_from_translation_quat_xyzw",
    "transform_points",
    "transform_to_translation_quat_xyzw",
    "wrap_angle",
    "yaw_from_quat_xyzw",
]

# Largest accepted | |q| - 1 | for a quaternion that claims to be a rotation. Generous enough for
# float32 round trips and hand-typed YAML (4 decimals), tight enough to catch garbage such as an
# all-zero quaternion from an uninitialised message.
QUAT_UNIT_TOLERANCE = 1e-3

# Below this norm a quaternion carries no direction and cannot be normalised.
_MIN_QUAT_NORM = 1e-9

# Below this sine of the half-angle between two quaternions slerp's weights are 0 / 0; linear
# interpolation (then normalisation) is exact there to rounding.
_SLERP_LINEAR_BELOW = 1e-9


def _as_transform(T: ArrayLike) -> NDArray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"transforms must have shape [..., 4, 4], got {T.shape}")
    return T


def _as_quat(q: ArrayLike) -> NDArray:
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternions must have shape [..., 4], got {q.shape}")
    return q


def make_transform(rotation: ArrayLike, translation: ArrayLike) -> NDArray:
    """Build ``[..., 4, 4]`` from rotations ``[..., 3, 3]`` and translations ``[..., 3]``."""
    R = np.asarray(rotation, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    if R.shape[-2:] != (3, 3) or t.shape[-1:] != (3,):
        raise ValueError(f"expected [..., 3, 3] and [..., 3], got {R.shape} and {t.shape}")
    batch = np.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    T = np.zeros(batch + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def compose(*transforms: ArrayLike) -> NDArray:
    """Matrix product left to right: ``compose(b_to_c, a_to_b) == a_to_c``."""
    if not transforms:
        raise ValueError("compose needs at least one transform")
    result = _as_transform(transforms[0])
    for T in transforms[1:]:
        result = result @ _as_transform(T)
    return result


def invert(T: ArrayLike) -> NDArray:
    """Inverse of rigid transforms ``[..., 4, 4]``: ``[R | t]^-1 = [R^T | -R^T t]``.

    Closed form, so it assumes ``R`` is a rotation; it does not correct a drifted one.
    """
    T = _as_transform(T)
    R_t = np.swapaxes(T[..., :3, :3], -1, -2)
    return make_transform(R_t, -(R_t @ T[..., :3, 3:4])[..., 0])


def transform_points(T: ArrayLike, points: ArrayLike) -> NDArray:
    """Apply ``T`` ([..., 4, 4]) to points ``[..., N, 3]`` (rotation and translation)."""
    T = _as_transform(T)
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1] != 3:
        raise ValueError(f"points must have shape [..., N, 3], got {p.shape}")
    return p @ np.swapaxes(T[..., :3, :3], -1, -2) + T[..., None, :3, 3]


def rotate_vectors(T: ArrayLike, vectors: ArrayLike) -> NDArray:
    """Apply only the rotation of ``T`` ([..., 4, 4] or [..., 3, 3]) to vectors ``[..., N, 3]``."""
    M = np.asarray(T, dtype=np.float64)
    if M.shape[-2:] not in ((3, 3), (4, 4)):
        raise ValueError(f"expected [..., 3, 3] or [..., 4, 4], got {M.shape}")
    v = np.asarray(vectors, dtype=np.float64)
    if v.shape[-1] != 3:
        raise ValueError(f"vectors must have shape [..., N, 3], got {v.shape}")
    return v @ np.swapaxes(M[..., :3, :3], -1, -2)


def quat_xyzw_to_wxyz(q: ArrayLike) -> NDArray:
    """Reorder ROS ``(x, y, z, w)`` to transforms3d ``(w, x, y, z)``; no normalisation."""
    return np.roll(_as_quat(q), 1, axis=-1)


def quat_wxyz_to_xyzw(q: ArrayLike) -> NDArray:
    """Reorder transforms3d ``(w, x, y, z)`` to ROS ``(x, y, z, w)``; no normalisation."""
    return np.roll(_as_quat(q), -1, axis=-1)


def is_unit_quat(q: ArrayLike, tol: float = QUAT_UNIT_TOLERANCE) -> NDArray | bool:
    """Whether ``| |q| - 1 | <= tol`` (any order; ``[..., 4]``). NaN/inf are never unit."""
    norm = np.linalg.norm(_as_quat(q), axis=-1)
    ok = np.isfinite(norm) & (np.abs(norm - 1.0) <= tol)
    return bool(ok) if ok.ndim == 0 else ok


def normalize_quat(q: ArrayLike) -> NDArray:
    """``q / |q|`` for ``[..., 4]`` quaternions (any order, the order is kept).

    Raises ValueError for non-finite or (near) zero quaternions, which are no rotation at all.
    """
    q = _as_quat(q)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(np.isfinite(norm)) or np.any(norm < _MIN_QUAT_NORM):
        raise ValueError(f"cannot normalise a zero or non-finite quaternion: {q.tolist()}")
    return q / norm


def quat_wxyz_to_matrix(q: ArrayLike) -> NDArray:
    """Rotation matrices ``[..., 3, 3]`` from ``(w, x, y, z)`` quaternions ``[..., 4]``.

    The quaternion is normalised first (see :func:`normalize_quat`); callers that must reject
    non-unit input check :func:`is_unit_quat` before calling.
    """
    q = normalize_quat(q)
    flat = q.reshape(-1, 4)
    return np.array([t3q.quat2mat(x) for x in flat]).reshape(q.shape[:-1] + (3, 3))


def quat_xyzw_to_matrix(q: ArrayLike) -> NDArray:
    """Rotation matrices ``[..., 3, 3]`` from ROS-order ``(x, y, z, w)`` quaternions."""
    return quat_wxyz_to_matrix(quat_xyzw_to_wxyz(q))


def matrix_to_quat_wxyz(R: ArrayLike) -> NDArray:
    """Unit ``(w, x, y, z)`` quaternions with ``w >= 0`` from rotations ``[..., 3, 3]``.

    Also accepts ``[..., 4, 4]`` transforms (their rotation block is used).
    """
    M = np.asarray(R, dtype=np.float64)
    if M.shape[-2:] not in ((3, 3), (4, 4)):
        raise ValueError(f"expected [..., 3, 3] or [..., 4, 4], got {M.shape}")
    flat = M[..., :3, :3].reshape(-1, 3, 3)
    q = np.array([t3q.mat2quat(x) for x in flat]).reshape(M.shape[:-2] + (4,))
    # mat2quat already prefers w >= 0; normalise to remove its eigen-solver rounding.
    return normalize_quat(q)


def matrix_to_quat_xyzw(R: ArrayLike) -> NDArray:
    """Unit ROS-order ``(x, y, z, w)`` quaternions with ``w >= 0`` from rotations."""
    return quat_wxyz_to_xyzw(matrix_to_quat_wxyz(R))


def transform_from_translation_quat_xyzw(translation: ArrayLike, quat_xyzw: ArrayLike) -> NDArray:
    """``[..., 4, 4]`` from a translation ``[..., 3]`` and a ROS-order quaternion ``[..., 4]``.

    This is the layout of ``geometry_msgs/Pose`` and ``Transform``. The quaternion is normalised;
    validate it with :func:`is_unit_quat` first where non-unit input must be refused.
    """
    return make_transform(quat_xyzw_to_matrix(quat_xyzw), translation)


def transform_to_translation_quat_xyzw(T: ArrayLike) -> tuple[NDArray, NDArray]:
    """Split ``[..., 4, 4]`` into translations ``[..., 3]`` and ROS-order quaternions [..., 4]."""
    T = _as_transform(T)
    return T[..., :3, 3].copy(), matrix_to_quat_xyzw(T)


def planar_pose(x: ArrayLike, y: ArrayLike, yaw: ArrayLike, z: ArrayLike = 0.0) -> NDArray:
    """Transforms ``[..., 4, 4]`` of a ground robot at ``(x, y, z)`` heading ``yaw`` (rad, CCW
    about +z, REP-103). Arguments broadcast together."""
    x, y, z, yaw = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, y, z, yaw)))
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.zeros(yaw.shape + (3, 3))
    R[..., 0, 0] = c
    R[..., 0, 1] = -s
    R[..., 1, 0] = s
    R[..., 1, 1] = c
    R[..., 2, 2] = 1.0
    return make_transform(R, np.stack([x, y, z], axis=-1))


def slerp(q0: ArrayLike, q1: ArrayLike, fraction: ArrayLike) -> NDArray:
    """Spherical linear interpolation of unit quaternions ``[..., 4]`` at ``fraction`` in [0, 1].

    Either order (``wxyz`` or ``xyzw``) as long as both inputs use the same one; the output keeps
    it. Takes the short way round (``q1`` is negated when ``q0 . q1 < 0``), so the result turns
    by ``fraction`` of the smallest angle between the two rotations at constant angular speed.
    Inputs are normalised first (ValueError for zero or non-finite ones); the output is unit
    length. Arguments broadcast: ``fraction`` ``[...]`` against the quaternions' leading axes.
    """
    q0 = normalize_quat(q0)
    q1 = normalize_quat(q1)
    f = np.asarray(fraction, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0.0, -q1, q1)
    theta = np.arccos(np.clip(np.abs(dot), 0.0, 1.0))
    sin = np.sin(theta)
    near = sin < _SLERP_LINEAR_BELOW
    safe = np.where(near, 1.0, sin)
    w0 = np.where(near, 1.0 - f, np.sin((1.0 - f) * theta) / safe)
    w1 = np.where(near, f, np.sin(f * theta) / safe)
    return normalize_quat(w0 * q0 + w1 * q1)


def interpolate_transform(T0: ArrayLike, T1: ArrayLike, fraction: ArrayLike) -> NDArray:
    """Rigid transforms ``[..., 4, 4]`` between ``T0`` (fraction 0) and ``T1`` (fraction 1).

    The translation is interpolated linearly and the rotation by :func:`slerp`; this is the
    constant-velocity motion between two poses sampled close together in time.
    """
    T0, T1 = _as_transform(T0), _as_transform(T1)
    f = np.asarray(fraction, dtype=np.float64)
    q = slerp(matrix_to_quat_wxyz(T0), matrix_to_quat_wxyz(T1), f)
    t = T0[..., :3, 3] + f[..., None] * (T1[..., :3, 3] - T0[..., :3, 3])
    return make_transform(quat_wxyz_to_matrix(q), t)


def wrap_angle(a: ArrayLike) -> ArrayLike:
    """Angles (radians, scalars or arrays) wrapped to ``[-pi, pi)``."""
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def yaw_from_quat_xyzw(q: ArrayLike) -> NDArray:
    """Heading (rotation about z, radians in [-pi, pi]) of ROS-order quaternions ``[..., 4]``.

    Exact for planar rotations; for tilted ones it is the yaw of the z-y-x Euler angles.
    """
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = (q[..., i] for i in range(4))
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))

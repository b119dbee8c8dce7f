"""REP-103 frames: ROS body frames versus the camera optical frame.

A ROS body frame (``base_link``, ``camera_link``) has x forward, y left, z up. A camera *optical*
frame (``camera_optical_frame``) has x right, y down, z forward, matching image coordinates: u
grows with x, v grows with y, depth is z. The two share an origin and differ by a fixed rotation.

Transforms follow the ``a_to_b`` naming of :mod:`mirage_ros.geometry.se3` (``p_b = a_to_b @ p_a``).
The camera mount is given the way one measures it on a robot: the ``camera_link`` origin in
``base_link`` (forward ``x_offset``, left ``y_offset``, up ``height``) and a pitch about base y,
positive when the camera looks down (a positive rotation about +y turns +x towards -z).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry.se3 import compose, make_transform

__all__ = [
    "BODY_TO_OPTICAL",
    "OPTICAL_TO_BODY",
    "OPTICAL_TO_BODY_ROTATION",
    "camera_link_to_base",
    "camera_pose_from_base",
]


def _frozen(a: NDArray) -> NDArray:
    a.flags.writeable = False
    return a


# Columns are the optical axes written in the body frame:
# optical x (right) = -body y, optical y (down) = -body z, optical z (forward) = +body x.
OPTICAL_TO_BODY_ROTATION: NDArray = _frozen(
    np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
)
OPTICAL_TO_BODY: NDArray = _frozen(make_transform(OPTICAL_TO_BODY_ROTATION, np.zeros(3)))
# A pure rotation, so the inverse is the transpose.
BODY_TO_OPTICAL: NDArray = _frozen(OPTICAL_TO_BODY.T.copy())


def camera_link_to_base(
    height: ArrayLike, pitch: ArrayLike, x_offset: ArrayLike = 0.0, y_offset: ArrayLike = 0.0
) -> NDArray:
    """Mount transform ``camera_link -> base_link`` (body convention, x forward).

    ``height`` and offsets in metres, ``pitch`` in radians (down positive). Arguments broadcast;
    the result is ``[..., 4, 4]``.
    """
    height, pitch, x_offset, y_offset = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (height, pitch, x_offset, y_offset))
    )
    c, s = np.cos(pitch), np.sin(pitch)
    R = np.zeros(pitch.shape + (3, 3))
    R[..., 0, 0] = c
    R[..., 0, 2] = s
    R[..., 1, 1] = 1.0
    R[..., 2, 0] = -s
    R[..., 2, 2] = c
    return make_transform(R, np.stack([x_offset, y_offset, height], axis=-1))


def camera_pose_from_base(
    base_to_map: ArrayLike,
    height: ArrayLike,
    pitch: ArrayLike,
    x_offset: ArrayLike = 0.0,
    y_offset: ArrayLike = 0.0,
) -> NDArray:
    """``optical_to_map`` for a camera mounted on a base whose pose is ``base_to_map``.

    ``base_to_map`` is ``[..., 4, 4]`` (e.g. every pose of every candidate path); the mount
    arguments are as in :func:`camera_link_to_base` and broadcast with it. The result maps points
    from the camera optical frame (x right, y down, z forward) to the map frame.
    """
    mount = camera_link_to_base(height, pitch, x_offset, y_offset)
    return compose(base_to_map, mount, OPTICAL_TO_BODY)

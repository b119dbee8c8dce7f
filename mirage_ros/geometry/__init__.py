"""Geometry for mirage_ros: pinhole cameras, SE(3), REP-103 frames and Plücker rays.

numpy only (plus transforms3d for quaternions; torch only inside the Plücker functions, imported
when they run); nothing here imports ROS. The conventions are written down in the submodules:
pixel grid and ROS K in :mod:`.camera`, transform
naming (``a_to_b`` maps frame ``a`` to frame ``b``) and quaternion order in :mod:`.se3`, body and
optical frames in :mod:`.frames`, ray channel order in :mod:`.rays`, the camera mount on the
robot in :mod:`.rig`.
"""

from mirage_ros.geometry.camera import (
    PinholeCamera,
    cell_index,
    intrinsics_matrix,
    k_from_ros,
    k_to_ros,
    pixel_centers,
    project,
    scale_intrinsics,
    unproject,
)
from mirage_ros.geometry.frames import (
    BODY_TO_OPTICAL,
    OPTICAL_TO_BODY,
    OPTICAL_TO_BODY_ROTATION,
    camera_link_to_base,
    camera_pose_from_base,
)
from mirage_ros.geometry.rays import plucker_rays
from mirage_ros.geometry.rig import CameraRig
from mirage_ros.geometry.se3 import (
    QUAT_UNIT_TOLERANCE,
    compose,
    interpolate_transform,
    invert,
    is_unit_quat,
    make_transform,
    matrix_to_quat_wxyz,
    matrix_to_quat_xyzw,
    normalize_quat,
    planar_pose,
    quat_wxyz_to_matrix,
    quat_wxyz_to_xyzw,
    quat_xyzw_to_matrix,
    quat_xyzw_to_wxyz,
    rotate_vectors,
    slerp,
    transform_from_translation_quat_xyzw,
    transform_points,
    transform_to_translation_quat_xyzw,
    wrap_angle,
    yaw_from_quat_xyzw,
)

__all__ = [
    "BODY_TO_OPTICAL",
    "OPTICAL_TO_BODY",
    "OPTICAL_TO_BODY_ROTATION",
    "QUAT_UNIT_TOLERANCE",
    "CameraRig",
    "PinholeCamera",
    "camera_link_to_base",
    "camera_pose_from_base",
    "cell_index",
    "compose",
    "interpolate_transform",
    "intrinsics_matrix",
    "invert",
    "is_unit_quat",
    "k_from_ros",
    "k_to_ros",
    "make_transform",
    "matrix_to_quat_wxyz",
    "matrix_to_quat_xyzw",
    "normalize_quat",
    "pixel_centers",
    "planar_pose",
    "plucker_rays",
    "project",
    "quat_wxyz_to_matrix",
    "quat_wxyz_to_xyzw",
    "quat_xyzw_to_matrix",
    "quat_xyzw_to_wxyz",
    "rotate_vectors",
    "scale_intrinsics",
    "slerp",
    "wrap_angle",
    "yaw_from_quat_xyzw",
    "transform_from_translation_quat_xyzw",
    "transform_points",
    "transform_to_translation_quat_xyzw",
    "unproject",
]

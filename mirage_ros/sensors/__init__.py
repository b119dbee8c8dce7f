"""Camera and pose inputs, ROS-free: what the node and the bag importer share.

numpy only (plus :mod:`mirage_ros.geometry`); nothing here imports ROS, torch models or the
tools, so a recording is paired and decoded exactly as the live node does it:

* :mod:`.image_codec`: raw ``sensor_msgs/Image`` fields <-> numpy (encodings, step, byte order);
* :mod:`.depth`: depth images (16UC1 / mono16 millimetres, 32FC1 metres) to float32 metres,
  0 = invalid;
* :mod:`.pose_buffer`: base poses over time, interpolated (slerp) at camera stamps;
* :mod:`.pairing`: images + depth + camera info + poses -> :class:`Observation`.
"""

from mirage_ros.sensors.depth import DEPTH_ENCODINGS, check_depth_units, decode_depth
from mirage_ros.sensors.image_codec import (
    SUPPORTED_ENCODINGS,
    EncodedImage,
    decode_image,
    decode_rgb8,
    encode_image,
    encoding_info,
    to_rgb8,
)
from mirage_ros.sensors.pairing import DROP_REASONS, Observation, ObservationPairer
from mirage_ros.sensors.pose_buffer import CLOCK_JUMP_BACK, MAX_POSITION, PoseBuffer, check_pose

__all__ = [
    "CLOCK_JUMP_BACK",
    "DEPTH_ENCODINGS",
    "DROP_REASONS",
    "MAX_POSITION",
    "SUPPORTED_ENCODINGS",
    "EncodedImage",
    "Observation",
    "ObservationPairer",
    "PoseBuffer",
    "check_depth_units",
    "check_pose",
    "decode_depth",
    "decode_image",
    "decode_rgb8",
    "encode_image",
    "encoding_info",
    "to_rgb8",
]

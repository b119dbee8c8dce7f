"""Frames of the analytic room (``memory.synthetic.Room``) observed by an engine: the shared
fixture of the engine tests, without the simulator."""

from __future__ import annotations

import torch

from mirage_ros.geometry import planar_pose
from mirage_ros.memory.synthetic import Room, pinhole, ray_depth


def observe_room(engine, yaws, size=(96, 160)) -> None:
    """Observe the room from the origin at each yaw, at a camera size other than the model's
    (the engine resizes), shaded by depth; stamps 0, 1, 2, ..."""
    room = Room()
    h, w = size
    K = pinhole(60.0, h, w)
    for i, yaw in enumerate(yaws):
        base = planar_pose(0.0, 0.0, yaw)
        cam = torch.from_numpy(base) @ engine.cam_to_base
        depth = ray_depth(cam[None], K, (h, w), room)[0]
        shade = (255 * torch.exp(-depth / 4.0)).clamp(0, 255).to(torch.uint8)
        engine.observe(shade[..., None].expand(-1, -1, 3).contiguous(), depth, K,
                       torch.from_numpy(base), float(i))

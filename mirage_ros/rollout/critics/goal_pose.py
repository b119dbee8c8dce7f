"""``goal_pose``: how far the end of each path is from the goal pose, and how badly it faces.

cost = distance (m, in the ground plane) from the path's last pose to the goal position
+ ``heading_weight`` x |heading error| (rad). The path's last pose is the one the planner sent,
not the end of the imagined horizon: a planner asks where its path leads. No goal pose: 0.
"""

from __future__ import annotations

import numpy as np

from mirage_ros.geometry import wrap_angle, yaw_from_quat_xyzw
from mirage_ros.rollout.critics.base import Critic, CriticBatch, register


@register
class GoalPoseCritic(Critic):
    name = "goal_pose"
    description = "metres from the path's end to the goal pose, plus weighted heading error"
    default_weight = 1.0
    parameters = {
        "heading_weight": (0.0, "metres of cost per radian of heading error at the path's end"),
    }

    def cost(self, batch: CriticBatch) -> np.ndarray:
        if batch.goal.pose is None:
            return np.zeros(batch.n_paths)
        goal = batch.goal.pose.detach().cpu().double().numpy()
        goal_yaw = np.arctan2(goal[1, 0], goal[0, 0])
        ends = np.stack([p.positions[-1, :2] for p in batch.paths])
        yaws = np.array([yaw_from_quat_xyzw(p.quaternions_xyzw[-1]) for p in batch.paths])
        dist = np.linalg.norm(ends - goal[:2, 3], axis=1)
        return dist + self.heading_weight * np.abs(wrap_angle(yaws - goal_yaw))

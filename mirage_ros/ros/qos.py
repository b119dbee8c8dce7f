"""QoS profiles shared by the mirage node and its clients.

ROS 2's default service QoS keeps the last 10 requests. ScorePaths goals, cancels and result
requests travel as service calls, and a planner that sends a burst of goals (or a cancel storm)
faster than the server's executor takes them loses the oldest: measured, a burst of 60 goals
lost goal 0's request and its client waited forever. A deeper reliable history on both ends
keeps every request of any burst a planner can reasonably make.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

ACTION_SERVICE_DEPTH = 1000

ACTION_SERVICE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=ACTION_SERVICE_DEPTH,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)


def action_qos_kwargs() -> dict[str, QoSProfile]:
    """Keyword arguments for ``ActionServer`` and ``ActionClient``: the deep service QoS for
    goals, cancels and results."""
    return {"goal_service_qos_profile": ACTION_SERVICE_QOS,
            "result_service_qos_profile": ACTION_SERVICE_QOS,
            "cancel_service_qos_profile": ACTION_SERVICE_QOS}

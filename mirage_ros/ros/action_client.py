"""A work-round for the action client of rclpy 9 (the Kilted wheels), used by every long-running
ScorePaths client of this package (the demo planner, the soak and cancel benchmarks).

ros2/rclpy#1532: ``ActionClient.send_goal_async`` registers two futures with the client's
waitable and removes only one, so its ``_futures`` list grows by one per goal forever, and the
executor walks that list on every action message. Measured in the 30-minute soak at 10 goals a
second: the client's CPU rose from 20 to 48 % and its round-trip overhead from 6 to 28 ms, while
the node's own planning time stayed flat.
"""

from __future__ import annotations


def prune_leaked_futures(client) -> tuple[int, int]:
    """Drop the futures of ``client`` (an ``rclpy.action.ActionClient``) that no pending goal,
    cancel or result request holds: the leaked ones (none once rclpy is fixed). Returns
    ``(before, pruned)``. Relies on rclpy 9 private attributes; does nothing without them."""
    futures = getattr(client, "_futures", None)
    lock = getattr(client, "_lock", None)
    if futures is None or lock is None:
        return 0, 0
    with lock:
        live = {id(f) for pending in (client._pending_goal_requests,
                                      client._pending_cancel_requests,
                                      client._pending_result_requests)
                for f in pending.values()}
        before = len(futures)
        futures[:] = [f for f in futures if id(f) in live]
        return before, before - len(futures)

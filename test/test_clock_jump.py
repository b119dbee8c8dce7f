"""A clock that jumps back (a simulation reset, a bag played again) against the running node:
detected by the node's clock under use_sim_time, or by camera stamps without it, and handled as
the ``clock_jump`` parameter says (keep the memory with its stamps moved back, or clear it)."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.time import Time
from ros_harness import node_process, ros_client
from rosgraph_msgs.msg import Clock

from mirage_ros.bench.camera import SyntheticCamera
from mirage_ros.memory import persistence
from mirage_ros.srv import SaveMemory

NODE = "mirage_ros.ros.mirage_node"


class _StampedNode:
    """The client node, with a clock of our own for the camera's stamps."""

    def __init__(self, node) -> None:
        self._node, self.t = node, 0.0

    def __getattr__(self, name):
        return getattr(self._node, name)

    def get_clock(self):
        return self

    def now(self) -> Time:
        return Time(nanoseconds=round(self.t * 1e9))


class _Rig:
    def __init__(self, client, sim_time: bool) -> None:
        self.client, self.sim_time = client, sim_time
        node = client.node
        self.stamped = _StampedNode(node)
        self.camera = SyntheticCamera(self.stamped, rate=10.0)
        self.camera.timer.cancel()  # frames go out when the test says, with its stamps
        self.clock = node.create_publisher(Clock, "/clock", 10)
        self.diag: dict[str, str] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.save = node.create_client(SaveMemory, "/mirage/save_memory")

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("imagination"):
                self.diag = {kv.key: kv.value for kv in status.values}
                self.reports += 1

    reports = 0

    def settle(self, t: float) -> float:
        """Tick the clock without frames until two diagnostics reports in a row show the same
        writes (frames already queued in the node have been written); returns the time."""
        last = None
        while True:
            seen = self.reports
            t = self.run_until(t, lambda seen=seen: self.reports > seen, "diagnostics",
                               frames=False)
            now = (self.written(), self.voxels())
            if now == last:
                return t
            last = now

    def tick(self, t: float, frame: bool = True) -> None:
        """Sim time ``t``: the clock (when simulated) and one camera frame stamped ``t``."""
        self.stamped.t = t
        if self.sim_time:
            self.clock.publish(Clock(clock=Time(nanoseconds=round(t * 1e9)).to_msg()))
        if frame:
            self.camera.publish()
        self.client.executor.spin_once(timeout_sec=0.05)

    def run_until(self, t: float, done, what: str, frames: bool = True, limit: float = 60.0):
        """Tick 0.1 s of sim time per ~0.05 s until ``done()``; returns the time reached."""
        start = t
        while not done():
            if t - start > 2 * limit:
                raise TimeoutError(f"timed out waiting for {what}; diagnostics {self.diag}")
            t += 0.1
            self.tick(t, frames)
        return t

    def voxels(self) -> int:
        return int(self.diag.get("voxels", "-1"))

    def written(self) -> int:
        return int(self.diag.get("observations written", "0"))

    def jumps(self) -> int:
        return int(self.diag.get("clock jumps back", "0"))


@pytest.mark.parametrize(("sim_time", "policy"), [(True, "keep"), (False, "clear")])
def test_a_clock_jump_back_keeps_or_clears_the_memory_as_configured(sim_time, policy, tmp_path):
    args = ["-p", f"use_sim_time:={'true' if sim_time else 'false'}",
            "-p", f"clock_jump:={policy}", "-p", "observe.max_rate:=20.0",
            "-p", "critics:=[path_length]"]
    with node_process(NODE, args) as proc, ros_client("clock_jump_test") as client:
        rig = _Rig(client, sim_time)
        client.spin_until(lambda: rig.camera.image.get_subscription_count() > 0
                          and (not sim_time or rig.clock.get_subscription_count() > 0),
                          30.0, "the node's subscriptions")
        t = rig.run_until(1000.0, lambda: rig.written() >= 3 and rig.voxels() > 0,
                          "a memory")
        t = rig.settle(t)
        before = rig.voxels()
        if sim_time:  # the simulation resets: /clock goes back, no frame yet
            t = rig.run_until(4.0, lambda: rig.jumps() >= 1, "the jump", frames=False)
            assert rig.voxels() == (before if policy == "keep" else 0)
            t = rig.run_until(t, lambda: rig.written() >= 6, "writes after the jump")
        else:  # a bag played again: only the stamps say so
            t = rig.run_until(4.0, lambda: rig.jumps() >= 1 and rig.written() >= 4,
                              "the jump")
        assert rig.jumps() == 1 and proc.alive()
        path = tmp_path / "after.safetensors"
        client.spin_until(rig.save.service_is_ready, 30.0, "save_memory")
        answer = client.result(rig.save.call_async(SaveMemory.Request(path=str(path))))
        assert answer.success, answer.message
        state = persistence.read_file(path)
        # The memory's clock follows the new time: stamps are not left ~1000 s in the future.
        assert state.now is not None and state.now <= t + 1e-6
        assert float(state.stamp.max()) <= t + 1e-6
        if policy == "keep":
            assert answer.voxels >= before  # the old map is still there
            assert float(state.stamp.min()) < 4.0  # ... aged, not stamped anew
        assert "time jumped back" in proc.log()

"""How long a planner waits for a running ScorePaths goal to stop: cancel and preemption.

    python -m mirage_ros.bench.cancel [--trials 200] [--paths 32] [--horizon 8]
        [--device auto] [--json FILE]

Starts the mirage node with the bare-machine launcher, gives it a memory from the synthetic
camera of ``bench.camera`` and then stops the camera, so the memory stays fixed and one goal
always has one answer. It times a reference goal (``--paths`` arcs x ``--horizon`` steps), then
runs ``--trials`` trials, alternating:

- **cancel**: send the goal, wait for its first feedback (the rollout is running) and a random
  further delay within the rollout, ask to cancel, and time from the request to the result;
- **preempt**: the same, but send the goal again instead of cancelling: time from sending the
  newer goal to the older goal's result (PREEMPTED), and the part of it spent waiting for the
  newer goal to be accepted; the newer goal then runs to the end.

Then a **storm**: ``--storm`` goals sent as fast as the client can, each cancelled at once or
not at random; every one must get a result (CANCELED, PREEMPTED or SUCCESS) within the timeout
(no deadlock), and the last one must succeed unless it was cancelled.

After every trial the next goal must be served normally: the preempting goal (or, after a
cancel, a fresh one every few trials) must succeed with exactly the reference answer (same
scores: the memory was not disturbed). A request that arrives after the goal already finished is
counted, not timed. Prints p50 / p90 / p99 / max per kind and exits non-zero if any goal got a
wrong code or a different answer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections import deque

import numpy as np
import rclpy
from action_msgs.msg import GoalStatus
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from mirage_ros.action import ScorePaths
from mirage_ros.bench.camera import SyntheticCamera, fan_goal
from mirage_ros.ros.action_client import prune_leaked_futures
from mirage_ros.ros.graph import mirage_graph
from mirage_ros.ros.launcher import launch_graph
from mirage_ros.ros.qos import action_qos_kwargs

Result = ScorePaths.Result


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Bench:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.client = ActionClient(node, ScorePaths, "/mirage/score_paths",
                                   **action_qos_kwargs())

    def wait(self, future, timeout: float = 120.0, what: str = "an answer"):
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            self.executor.spin_once(timeout_sec=0.01)
        return future.result()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def send(self, goal, on_feedback=None):
        handle = self.wait(self.client.send_goal_async(goal, feedback_callback=on_feedback),
                           what="goal response")
        if not handle.accepted:
            raise SystemExit("the node rejected a goal")
        return handle

    def run(self, goal) -> Result:
        return self.wait(self.send(goal).get_result_async(), what="result").result

    def prune(self) -> None:
        prune_leaked_futures(self.client)  # ros2/rclpy#1532


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200, help="cancel and preempt, alternating")
    p.add_argument("--paths", type=int, default=32)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--device", default="auto", help="the node's device parameter")
    p.add_argument("--check-every", type=int, default=5,
                   help="after every n-th cancel, run the goal to the end and compare")
    p.add_argument("--storm", type=int, default=100, help="goals in the final storm")
    p.add_argument("--seed", type=int, default=0, help="of the random delays")
    p.add_argument("--json", help="write every measurement here")
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    rng = random.Random(args.seed)
    rclpy.init()
    node = Node("mirage_bench_cancel")
    odom: deque[Odometry] = deque(maxlen=10)
    camera = SyntheticCamera(node, odom, rate=10.0)
    bench = Bench(node)
    specs = [s.with_parameters(device=args.device) if s.name == "mirage" else s
             for s in mirage_graph()]
    out: dict = {"paths": args.paths, "horizon": args.horizon, "cancel": [], "preempt": [],
                 "finished_first": {"cancel": 0, "preempt": 0}, "wrong_code": [],
                 "different_answer": 0, "follow_ups": 0, "storm": {},
                 "preempt_accepted": []}
    with launch_graph(specs, log_level="warn"):
        if not bench.client.wait_for_server(timeout_sec=120.0):
            raise SystemExit("the mirage node did not come up")
        bench.wait(_when(lambda: bool(odom)), what="odometry")
        goal = fan_goal(odom[-1], args.paths, args.horizon)
        # A memory first; then the camera stops and the node's last queued frames settle.
        while bench.run(goal).error_code == Result.NO_MEMORY:
            bench.spin_for(0.2)
        bench.spin_for(1.0)
        camera.timer.cancel()
        bench.spin_for(2.0)
        reference = bench.run(goal)
        t0 = time.perf_counter()
        again = bench.run(goal)
        duration = time.perf_counter() - t0
        if reference.error_code != Result.SUCCESS or list(again.scores) != list(reference.scores):
            raise SystemExit(f"the reference goal is not repeatable: {again.error_msg!r}")
        print(f"reference goal: {args.paths} paths x {args.horizon} steps, {duration:.3f} s "
              "round trip")

        def served_normally(result) -> None:
            out["follow_ups"] += 1
            if result.error_code != Result.SUCCESS:
                out["wrong_code"].append(("follow-up", result.error_code, result.error_msg))
            elif list(result.scores) != list(reference.scores):
                out["different_answer"] += 1

        cancels = 0
        for trial in range(args.trials):
            kind = "cancel" if trial % 2 == 0 else "preempt"
            fed = []
            handle = bench.send(goal, lambda fb, fed=fed: fed.append(1))
            result_future = handle.get_result_async()
            bench.wait(_when(lambda fed=fed, f=result_future: bool(fed) or f.done()),
                       what="feedback")
            bench.spin_for(rng.uniform(0.0, 0.6 * duration))
            if result_future.done():
                out["finished_first"][kind] += 1
                continue
            asked = time.perf_counter()
            if kind == "cancel":
                handle.cancel_goal_async()
                result = bench.wait(result_future, what="cancelled result")
                waited = time.perf_counter() - asked
                expected, status = Result.CANCELED, GoalStatus.STATUS_CANCELED
            else:
                newer = bench.send(goal)
                out["preempt_accepted"].append(time.perf_counter() - asked)
                result = bench.wait(result_future, what="preempted result")
                waited = time.perf_counter() - asked
                expected, status = Result.PREEMPTED, GoalStatus.STATUS_ABORTED
            if result.result.error_code == Result.SUCCESS:
                out["finished_first"][kind] += 1  # finished while the request was on its way
            elif result.result.error_code != expected or result.status != status:
                out["wrong_code"].append((kind, result.result.error_code, result.result.error_msg))
            else:
                out[kind].append(waited)
            if kind == "preempt":
                served_normally(bench.wait(newer.get_result_async(), what="result").result)
            else:
                cancels += 1
                if cancels % args.check_every == 0:
                    served_normally(bench.run(goal))
            bench.prune()
            if trial % 20 == 19:
                print(f"  {trial + 1} trials: cancel p50 "
                      f"{percentile(out['cancel'], 50) * 1e3:.1f} ms, preempt p50 "
                      f"{percentile(out['preempt'], 50) * 1e3:.1f} ms", flush=True)
        if args.storm:
            out["storm"] = storm(bench, goal, args.storm, rng)
            served_normally(bench.run(goal))
            print(f"storm: {args.storm} goals answered in {out['storm']['seconds']:.2f} s: "
                  f"{out['storm']['codes']}")
    node.destroy_node()
    rclpy.try_shutdown()
    for kind in ("cancel", "preempt"):
        ms = [v * 1e3 for v in out[kind]]
        if ms:
            print(f"{kind}: {len(ms)} timed, p50 {percentile(ms, 50):.1f} ms, p90 "
                  f"{percentile(ms, 90):.1f} ms, p99 {percentile(ms, 99):.1f} ms, max "
                  f"{max(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms; "
                  f"{out['finished_first'][kind]} finished before the request")
    accepted = [v * 1e3 for v in out["preempt_accepted"]]
    if accepted:  # the new goal's own request -> response, inside the preempt time above
        print(f"preempt, of which the newer goal's acceptance: p50 {percentile(accepted, 50):.1f}"
              f" ms, p99 {percentile(accepted, 99):.1f} ms, max {max(accepted):.1f} ms")
    print(f"follow-up goals: {out['follow_ups']}, with another answer: "
          f"{out['different_answer']}; wrong result codes: {len(out['wrong_code'])}")
    for item in out["wrong_code"][:10]:
        print(f"  wrong: {item}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**out, "reference_seconds": duration}, f, indent=1)
    return 1 if out["wrong_code"] or out["different_answer"] else 0


def storm(bench: Bench, goal, n: int, rng: random.Random) -> dict:
    """Send ``n`` goals back to back, cancelling about half at once; every one must end."""
    t0 = time.perf_counter()
    pending = [bench.client.send_goal_async(goal) for _ in range(n)]
    handles, results, cancelled = [], [], set()
    for i, future in enumerate(pending):
        handle = bench.wait(future, what=f"storm goal {i} response")
        handles.append(handle)
        if rng.random() < 0.5:
            handle.cancel_goal_async()
            cancelled.add(i)
    for i, handle in enumerate(handles):
        results.append(bench.wait(handle.get_result_async(), what=f"storm goal {i} result"))
    codes: dict[str, int] = {}
    names = {v: k for k, v in vars(Result).items() if k.isupper() and isinstance(v, int)}
    for r in results:
        name = names.get(r.result.error_code, str(r.result.error_code))
        codes[name] = codes.get(name, 0) + 1
    last = results[-1].result.error_code
    if last != Result.SUCCESS and (n - 1) not in cancelled:
        raise SystemExit(f"the storm's last goal was not served: {results[-1].result.error_msg}")
    unexpected = {k: v for k, v in codes.items() if k not in ("SUCCESS", "CANCELED", "PREEMPTED")}
    if unexpected:
        raise SystemExit(f"storm goals ended with unexpected codes {unexpected}")
    return {"goals": n, "cancelled": len(cancelled), "codes": codes,
            "seconds": time.perf_counter() - t0}


class _when:
    """A future-like object done when ``predicate()`` is (for ``Bench.wait``)."""

    def __init__(self, predicate) -> None:
        self.done, self.result = predicate, lambda: None


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak: a camera stream and a steady ScorePaths load on one mirage node, for minutes or hours.

    python -m mirage_ros.bench.soak [--minutes 30] [--camera-rate 30] [--goal-rate 10]
        [--paths 2] [--horizon 1] [--out out/soak] [--device auto] [--capacity 10000]

Starts the ``mirage`` node alone (``graph.mirage_graph``) as its own process with the
bare-machine launcher and feeds it from this process: the synthetic camera of
:mod:`mirage_ros.bench.camera` (analytic room, ray-cast depth) on its ``patrol`` trajectory, a
circle whose centre keeps moving round the room, so ground seen long ago comes back into view
and the bounded memory keeps evicting; and ScorePaths goals, an arc fan
(``rollout.arc_fan``) of ``--paths`` paths x ``--horizon`` steps from the robot's latest pose,
sent from a ``--goal-rate`` timer.

Goal policy (``--overlap``): ``send`` (default) sends on every tick even while the previous goal
is still running, as a planner that replans on a clock does; the node then preempts the older
goal (newest wins) and answers it PREEMPTED. ``skip`` sends only when nothing is in flight (the
demo planner's policy) and counts the skipped ticks. Answers other than SUCCESS and PREEMPTED
(and goals refused or left unanswered) are failures.

The clock starts once the node's memory holds voxels (the first camera frames written). Every
``--sample-period`` seconds it records the node's RSS (VmRSS of its pid in /proc) and CPU, the
voxel count and capacity from ``/diagnostics``, and for the goals answered in that window the
client round trip p50/p90/p99 (SUCCESS answers only) and the node's ``planning_time``, and the
achieved camera and goal rates. Written to ``--out``: ``samples.csv``, ``goals.csv``,
``summary.json``, ``soak.png`` (RSS, voxels vs capacity, latency over time) and the node's log
``logs/mirage.log``.

Summary and targets:

- warm-up ends at the later of ``--warmup`` (fraction of the run, default 0.2) and the first
  sample at capacity (the memory full and evicting, so its steady-state allocations have
  happened). RSS "after warm-up" is the median of the first three samples from there, RSS "at
  the end" the median of the last three; target: growth < ``--rss-target`` % (5).
- voxels <= capacity in every sample (and whether capacity was reached at all).
- latency drift: goals answered SUCCESS in the first and in the last fifth of the time after
  warm-up; target: p50 ratio (last / first) <= 1.25 and p99 ratio <= 1.5.
- the node stayed up, and no goal failed.

The client works round an rclpy bug that would otherwise make this process, not the node, the
thing that drifts: see :func:`prune_leaked_futures` (``--keep-rclpy-leak`` to see it).

Exit code 1 when the node died (or stopped uncleanly), else 0; a missed target is reported in
the summary, not in the exit code.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import statistics
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

WARMUP_FRACTION = 0.2
RSS_TARGET_PCT = 5.0
P50_DRIFT_TARGET = 1.25
P99_DRIFT_TARGET = 1.5
DRIFT_WINDOW = 0.2  # of the time after warm-up: the first and last windows compared
SUCCESS, PREEMPTED = 0, 5


@dataclass
class Goal:
    """One ScorePaths goal as the client saw it (times in soak seconds)."""

    sent: float
    answered: float = math.nan
    code: int = -1  # -1: unanswered, -2: refused by the server
    rtt_ms: float = math.nan
    planning_ms: float = math.nan


# ---------------------------------------------------------------------------------------------
# /proc


def read_rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.percentile(vals, q)) if vals else math.nan


# ---------------------------------------------------------------------------------------------
# Analysis (pure: the test feeds it made-up samples too)


def summarize(
    samples: Sequence[dict],
    goals: Sequence[Goal],
    *,
    duration: float,
    warmup_fraction: float = WARMUP_FRACTION,
    rss_target_pct: float = RSS_TARGET_PCT,
) -> dict:
    """The soak's verdict from its samples and goals (see the module docstring)."""
    if not samples:
        raise ValueError("no samples")
    t = np.array([s["t_s"] for s in samples], dtype=np.float64)
    rss = np.array([s["rss_mib"] for s in samples], dtype=np.float64)
    voxels = np.array([s["voxels"] for s in samples], dtype=np.float64)
    capacity = max(int(s["capacity"]) for s in samples)
    full = np.flatnonzero(voxels >= capacity)
    full_at = float(t[full[0]]) if len(full) else None
    warmup = max(warmup_fraction * duration, full_at if full_at is not None else 0.0)
    after = np.flatnonzero(t >= warmup)
    if len(after) < 4:  # too short to say anything: measure from the middle
        after = np.arange(len(t) // 2, len(t))
    rss_warm = float(np.median(rss[after[:3]]))
    rss_end = float(np.median(rss[after[-3:]]))
    growth = 100.0 * (rss_end - rss_warm) / rss_warm
    slope = (float(np.polyfit(t[after] / 60.0, rss[after], 1)[0])
             if len(after) >= 2 and np.ptp(t[after]) > 0 else math.nan)

    t_w0 = float(t[after[0]])
    t_end = float(t[-1])
    span = max(t_end - t_w0, 1e-9)
    first = [g for g in goals if g.code == SUCCESS
             and t_w0 <= g.answered < t_w0 + DRIFT_WINDOW * span]
    last = [g for g in goals if g.code == SUCCESS and g.answered >= t_end - DRIFT_WINDOW * span]

    def lat(gs: list[Goal]) -> dict:
        ms = [g.rtt_ms for g in gs]
        return {"n": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
                "p99_ms": percentile(ms, 99),
                "planning_p50_ms": percentile([g.planning_ms for g in gs], 50)}

    lat_first, lat_last = lat(first), lat(last)
    p50_ratio = lat_last["p50_ms"] / lat_first["p50_ms"] if first and last else math.nan
    p99_ratio = lat_last["p99_ms"] / lat_first["p99_ms"] if first and last else math.nan
    counts = {
        "sent": len(goals),
        "succeeded": sum(g.code == SUCCESS for g in goals),
        "preempted": sum(g.code == PREEMPTED for g in goals),
        "failed": sum(g.code not in (SUCCESS, PREEMPTED) for g in goals),
    }
    codes: dict[str, int] = {}
    for g in goals:
        if g.code not in (SUCCESS, PREEMPTED):
            codes[str(g.code)] = codes.get(str(g.code), 0) + 1
    all_ms = [g.rtt_ms for g in goals if g.code == SUCCESS]
    return {
        "duration_s": t_end,
        "samples": len(samples),
        "warmup_end_s": float(t_w0),
        "capacity_reached_at_s": full_at,
        "rss_after_warmup_mib": rss_warm,
        "rss_end_mib": rss_end,
        "rss_max_after_warmup_mib": float(rss[after].max()),
        "rss_growth_pct": growth,
        "rss_slope_mib_per_min": slope,
        "rss_first_sample_mib": float(rss[0]),
        "voxels_max": int(voxels.max()),
        "capacity": capacity,
        "latency_all": {"n": len(all_ms), "p50_ms": percentile(all_ms, 50),
                        "p90_ms": percentile(all_ms, 90), "p99_ms": percentile(all_ms, 99)},
        "latency_first_window": lat_first,
        "latency_last_window": lat_last,
        "drift_p50_ratio": p50_ratio,
        "drift_p99_ratio": p99_ratio,
        "goals": counts,
        "failure_codes": codes,
        "targets": {
            "rss_growth": "PASS" if growth < rss_target_pct else "MISS",
            "voxels_within_capacity": "PASS" if voxels.max() <= capacity else "MISS",
            "latency_drift": ("PASS" if p50_ratio <= P50_DRIFT_TARGET
                              and p99_ratio <= P99_DRIFT_TARGET else "MISS"),
            "no_failed_goals": "PASS" if counts["failed"] == 0 else "MISS",
        },
    }


# ---------------------------------------------------------------------------------------------
# Output


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def figure(samples: Sequence[dict], summary: dict, title: str) -> np.ndarray:
    """Three panels over soak minutes: RSS, voxels vs capacity, goal latency."""
    from mirage_ros.train.plot import Panel, Series, panels

    m = [s["t_s"] / 60.0 for s in samples]
    warm = summary["warmup_end_s"] / 60.0
    bound = summary["rss_after_warmup_mib"] * (1 + RSS_TARGET_PCT / 100.0)
    blue, orange, grey, red, green = (31, 119, 180), (255, 127, 14), (90, 90, 90), \
        (214, 39, 40), (44, 160, 44)
    shade = (m[0], warm) if m else None
    return panels([
        Panel("node RSS (MiB)", [
            Series("VmRSS", m, [s["rss_mib"] for s in samples], blue),
            Series(f"+{RSS_TARGET_PCT:g} % of post-warm-up RSS", [warm, m[-1]], [bound, bound],
                   red, dashed=True),
        ], y_label="MiB", y_min=None, shade=shade, shade_label="warm-up"),
        Panel("memory voxels", [
            Series("voxels", m, [s["voxels"] for s in samples], green),
            Series("capacity", m, [s["capacity"] for s in samples], grey, dashed=True),
        ], y_label="voxels", shade=shade),
        Panel("ScorePaths round trip per sample window (SUCCESS goals)", [
            Series("p50", m, [s["lat_p50_ms"] for s in samples], blue),
            Series("p99", m, [s["lat_p99_ms"] for s in samples], orange),
            Series("node planning_time p50", m, [s["plan_p50_ms"] for s in samples], grey,
                   dashed=True),
        ], y_label="ms", shade=shade),
    ], x_label="soak time (min)", title=title)


def print_summary(s: dict, rates: dict) -> None:
    g = s["goals"]
    lf, ll = s["latency_first_window"], s["latency_last_window"]
    cap_at = s["capacity_reached_at_s"]
    reached = f"at {cap_at:.0f} s" if cap_at is not None else "never"
    print(f"soak {s['duration_s'] / 60:.1f} min, {s['samples']} samples; warm-up until "
          f"{s['warmup_end_s']:.0f} s; capacity reached "
          f"{reached}")
    print(f"  RSS: first sample {s['rss_first_sample_mib']:.1f} MiB, after warm-up "
          f"{s['rss_after_warmup_mib']:.1f} MiB, end {s['rss_end_mib']:.1f} MiB, growth "
          f"{s['rss_growth_pct']:+.2f} % (max {s['rss_max_after_warmup_mib']:.1f}, slope "
          f"{s['rss_slope_mib_per_min']:+.3f} MiB/min)  [{s['targets']['rss_growth']}]")
    print(f"  voxels: max {s['voxels_max']} / capacity {s['capacity']}  "
          f"[{s['targets']['voxels_within_capacity']}]")
    print(f"  latency first window: p50 {lf['p50_ms']:.1f} ms, p99 {lf['p99_ms']:.1f} ms "
          f"(n={lf['n']}); last window: p50 {ll['p50_ms']:.1f} ms, p99 {ll['p99_ms']:.1f} ms "
          f"(n={ll['n']}); drift p50 x{s['drift_p50_ratio']:.2f}, p99 "
          f"x{s['drift_p99_ratio']:.2f}  [{s['targets']['latency_drift']}]")
    la = s["latency_all"]
    print(f"  latency whole run: p50 {la['p50_ms']:.1f}, p90 {la['p90_ms']:.1f}, "
          f"p99 {la['p99_ms']:.1f} ms (n={la['n']})")
    print(f"  goals: sent {g['sent']}, succeeded {g['succeeded']}, preempted "
          f"{g['preempted']}, failed {g['failed']} {s['failure_codes'] or ''} "
          f"[{s['targets']['no_failed_goals']}]")
    print("  rates: " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))


# ---------------------------------------------------------------------------------------------
# The run


def write_stats(log: str) -> dict[str, int]:
    """Totals of the WriteStats the node logs at debug for each memory write."""
    totals = {"writes": 0, "voxels_new": 0, "voxels_evicted": 0}
    for line in log.splitlines():
        if "observed" not in line or "WriteStats(" not in line:
            continue
        totals["writes"] += 1
        for key in ("voxels_new", "voxels_evicted"):
            m = re.search(rf"\b{key}=(\d+)", line)
            if m:
                totals[key] += int(m.group(1))
    return totals


WRITE_SHARE_TARGET = 0.85  # of observe.max_rate: a write waits up to one camera frame past due


def _diag_values(msg) -> dict[str, str] | None:
    for status in msg.status:
        if status.name.startswith("mirage"):
            return {kv.key: kv.value for kv in status.values}
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--camera-rate", type=float, default=30.0)
    p.add_argument("--goal-rate", type=float, default=10.0)
    p.add_argument("--paths", type=int, default=2)
    p.add_argument("--horizon", type=int, default=1)
    p.add_argument("--overlap", choices=("send", "skip"), default="send",
                   help="a tick while a goal is in flight: send anyway (the node preempts "
                        "the older goal) or skip the tick")
    p.add_argument("--out", default="out/soak")
    p.add_argument("--device", default="auto", help="the node's device parameter")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the node's precision parameter")
    p.add_argument("--capacity", type=int, default=10000, help="node memory.capacity")
    p.add_argument("--write-rate", type=float, default=4.0, help="node observe.max_rate")
    p.add_argument("--trajectory", default="patrol", choices=("patrol", "circle"))
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--sample-period", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=WARMUP_FRACTION,
                   help="warm-up as a fraction of the run (at least until memory is full)")
    p.add_argument("--rss-target", type=float, default=RSS_TARGET_PCT)
    p.add_argument("--keep-rclpy-leak", action="store_true",
                   help="leave rclpy's leaked action-client futures (ros2/rclpy#1532) in place")
    args = p.parse_args(argv)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    import rclpy
    import torch
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from mirage_ros.action import ScorePaths
    from mirage_ros.bench.camera import SyntheticCamera, fan_goal
    from mirage_ros.ros.action_client import prune_leaked_futures
    from mirage_ros.ros.conversions import seconds
    from mirage_ros.ros.graph import mirage_graph
    from mirage_ros.ros.launcher import NodeProcess, ros_arguments
    from mirage_ros.ros.qos import action_qos_kwargs
    from mirage_ros.train.plot import save_png

    torch.set_num_threads(1)  # the ray caster is small; leave the cores to the node
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    duration = 60.0 * args.minutes
    overrides = {"device": args.device, "memory.capacity": args.capacity,
                 "observe.max_rate": args.write_rate, "precision": args.precision}
    (spec,) = mirage_graph()
    spec = spec.with_parameters(**overrides)
    # The node's own logger at debug: it logs every memory write's WriteStats (new, evicted);
    # its action server's per-goal debug lines stay off.
    ros_args = [*ros_arguments(spec, log_level="mirage:=debug"),
                "--log-level", "mirage.action_server:=info"]
    print("mirage node: " + " ".join(ros_args), flush=True)

    rclpy.init()
    node = Node("mirage_soak")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    odom: deque = deque(maxlen=1)
    camera = SyntheticCamera(node, odom, size=args.image_size, rate=args.camera_rate,
                             trajectory=args.trajectory)
    diag: dict = {"values": None, "at": None}

    def on_diag(msg) -> None:
        values = _diag_values(msg)
        if values is not None:
            diag["values"], diag["at"] = values, time.monotonic()

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    client = ActionClient(node, ScorePaths, "/mirage/score_paths", **action_qos_kwargs())

    goals: list[Goal] = []
    samples: list[dict] = []
    state = {"t0": None, "in_flight": 0, "skipped": 0, "sending": False, "pruned": 0}

    def now() -> float:
        return time.monotonic() - state["t0"]

    def on_result(future, goal: Goal, t_sent: float) -> None:
        state["in_flight"] -= 1
        goal.answered = now()
        result = future.result().result
        goal.code = int(result.error_code)
        goal.rtt_ms = (time.monotonic() - t_sent) * 1e3
        goal.planning_ms = seconds(result.planning_time) * 1e3

    def on_accepted(future, goal: Goal, t_sent: float) -> None:
        handle = future.result()
        if not handle.accepted:
            state["in_flight"] -= 1
            goal.code, goal.answered = -2, now()
            return
        handle.get_result_async().add_done_callback(
            lambda f: on_result(f, goal, t_sent))

    def on_goal_tick() -> None:
        if not state["sending"] or not odom:
            return
        if args.overlap == "skip" and state["in_flight"]:
            state["skipped"] += 1
            return
        msg = fan_goal(odom[-1], args.paths, args.horizon)
        goal = Goal(sent=now())
        goals.append(goal)
        state["in_flight"] += 1
        t_sent = time.monotonic()
        client.send_goal_async(msg).add_done_callback(
            lambda f: on_accepted(f, goal, t_sent))

    window = {"t": None, "frames": 0, "goals": 0, "cpu": 0.0, "own_cpu": 0.0}

    def take_sample(pid: int) -> None:
        t = now()
        values = diag["values"] or {}
        cpu = read_cpu_seconds(pid)
        own_cpu = time.process_time()
        dt = t - window["t"] if window["t"] is not None else math.nan
        done = [g for g in goals if math.isfinite(g.answered)]
        # goals are appended in send order but answered in any order: pick by answer time
        fresh = [g for g in goals if math.isfinite(g.answered)
                 and (window["t"] is None or g.answered > window["t"]) and g.answered <= t]
        ok = [g for g in fresh if g.code == SUCCESS]
        preempted = sum(g.code == PREEMPTED for g in fresh)
        dropped = sum(int(v) for k, v in values.items() if k.startswith("dropped "))
        if args.keep_rclpy_leak:
            client_futures = len(getattr(client, "_futures", ()))
        else:
            client_futures, pruned = prune_leaked_futures(client)
            state["pruned"] += pruned
        samples.append({
            "t_s": round(t, 3),
            "rss_mib": round(read_rss_mib(pid), 2),
            "node_cpu_pct": round(100 * (cpu - window["cpu"]) / dt, 1) if dt > 0 else math.nan,
            "loadavg_1m": os.getloadavg()[0],  # the whole machine: other work slows the node
            "soak_cpu_pct": (round(100 * (own_cpu - window["own_cpu"]) / dt, 1)
                             if dt > 0 else math.nan),
            "voxels": int(values.get("voxels", 0)),
            "capacity": int(values.get("capacity", args.capacity)),
            "observations_written": int(values.get("observations written", 0)),
            "node_image_hz": float(values.get("image rate (Hz)", "nan")),
            "node_write_hz": float(values.get("memory writes (Hz)", "nan")),
            "dropped_total": dropped,
            "diag_age_s": (round(time.monotonic() - diag["at"], 2)
                           if diag["at"] is not None else math.nan),
            "camera_hz": round((camera.frames - window["frames"]) / dt, 2) if dt > 0 else math.nan,
            "goal_hz": round((len(goals) - window["goals"]) / dt, 2) if dt > 0 else math.nan,
            "goals_sent": len(goals),
            "succeeded": sum(g.code == SUCCESS for g in done),
            "preempted": sum(g.code == PREEMPTED for g in done),
            "failed": sum(g.code not in (SUCCESS, PREEMPTED) for g in done),
            "in_flight": state["in_flight"],
            "client_futures": client_futures,  # rclpy#1532: grows by one a goal unless pruned
            "lat_n": len(ok),
            "preempted_share": round(preempted / len(fresh), 3) if fresh else math.nan,
            "lat_p50_ms": round(percentile([g.rtt_ms for g in ok], 50), 2),
            "lat_p90_ms": round(percentile([g.rtt_ms for g in ok], 90), 2),
            "lat_p99_ms": round(percentile([g.rtt_ms for g in ok], 99), 2),
            "plan_p50_ms": round(percentile([g.planning_ms for g in ok], 50), 2),
        })
        window.update(t=t, frames=camera.frames, goals=len(goals), cpu=cpu, own_cpu=own_cpu)

    def spin_until(done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if mirage.proc.poll() is not None:
                raise RuntimeError(f"the mirage node exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            executor.spin_once(timeout_sec=0.05)

    died = False
    stop_code = None
    rates: dict[str, float] = {}
    (out / "logs").mkdir(exist_ok=True)
    log_file = open(out / "logs" / "mirage.log", "wb")
    launched = time.monotonic()
    # The bare-machine launcher's process object: `python -m mirage_ros.ros.mirage_node` in its
    # own process group, so its pid is the node's.
    mirage = NodeProcess(spec.module, ros_args, output=log_file)
    try:
        proc = mirage.proc
        pid = proc.pid
        deadline = time.monotonic() + 10.0  # the child's cmdline is empty until it execs
        while True:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "mirage_ros.ros.mirage_node" in cmdline:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"pid {pid} is not the mirage node: {cmdline!r}")
            time.sleep(0.01)
        spin_until(client.server_is_ready, 180.0, "ScorePaths server")
        ready = time.monotonic() - launched
        spin_until(lambda: int((diag["values"] or {}).get("voxels", 0)) > 0, 120.0,
                   "voxels in the node's memory")
        print(f"node pid {pid}: server ready {ready:.1f} s after launch, memory written "
              f"{time.monotonic() - launched:.1f} s after launch; soaking {args.minutes:g} min",
              flush=True)
        state["t0"] = time.monotonic()
        state["sending"] = True
        frames0, publish0 = camera.frames, camera.publish_seconds
        node.create_timer(1.0 / args.goal_rate, on_goal_tick)
        take_sample(pid)
        next_sample = args.sample_period
        next_report = 60.0
        while now() < duration:
            executor.spin_once(timeout_sec=0.02)
            if proc.poll() is not None:
                died = True
                break
            if now() >= next_sample:
                take_sample(pid)
                next_sample += args.sample_period
                if now() >= next_report:
                    s = samples[-1]
                    print(f"  {s['t_s'] / 60:5.1f} min: RSS {s['rss_mib']:.1f} MiB, voxels "
                          f"{s['voxels']}/{s['capacity']}, p50 {s['lat_p50_ms']:.0f} ms, p99 "
                          f"{s['lat_p99_ms']:.0f} ms, camera {s['camera_hz']:.1f} Hz, goals "
                          f"{s['goal_hz']:.1f} Hz, {s['succeeded']} ok / {s['preempted']} "
                          f"preempted / {s['failed']} failed", flush=True)
                    next_report += 60.0
        state["sending"] = False
        elapsed = now()
        if not died and now() - window["t"] >= 1.0:
            take_sample(pid)
        if not died:
            # the goals still running get a few seconds to answer; the rest count as failed
            deadline = time.monotonic() + 10.0
            while state["in_flight"] and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
        rates = {
            "camera published (Hz)": (camera.frames - frames0) / elapsed,
            "camera publish cost (ms/frame)": 1e3 * (camera.publish_seconds - publish0)
            / max(camera.frames - frames0, 1),
            "goals sent (Hz)": len(goals) / elapsed,
            "goals succeeded (Hz)": sum(g.code == SUCCESS for g in goals) / elapsed,
            "ticks skipped": float(state["skipped"]),
            "rclpy leaked futures pruned": float(state["pruned"]),
        }
        node_rates = [s["node_image_hz"] for s in samples[1:] if math.isfinite(s["node_image_hz"])]
        if node_rates:
            rates["node image rate median (Hz)"] = statistics.median(node_rates)
    finally:
        if mirage.proc.poll() is not None:
            died = True
            print(f"the mirage node exited with {mirage.proc.returncode}", file=sys.stderr)
        stop_code = mirage.stop()
        log_file.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    clean_stop = stop_code == 0
    if not samples:
        return 1

    summary = summarize(samples, goals, duration=duration, warmup_fraction=args.warmup,
                        rss_target_pct=args.rss_target)
    log = (out / "logs" / "mirage.log").read_text(errors="replace")
    writes = write_stats(log)
    summary.update({
        "memory_writes_logged": writes["writes"],
        "voxels_new_total": writes["voxels_new"],
        "voxels_evicted_total": writes["voxels_evicted"],
        "node_died": died,
        "node_stop_code": stop_code,
        "node_log_errors": sum("ERROR" in line for line in log.splitlines()),
        "node_log_warnings": sum("WARN" in line for line in log.splitlines()),
        "dropped_total_end": samples[-1]["dropped_total"],
        "observations_written_end": samples[-1]["observations_written"],
        "rates": rates,
    })
    summary["targets"]["node_stayed_up"] = "MISS" if died else "PASS"
    # Writes while rollouts run back to back: none lost beyond observe.max_rate (the patrol
    # always turns faster than observe.min_rotation, so the rate limit is what binds).
    after = [s for s in samples if s["t_s"] >= summary["warmup_end_s"]] or samples
    span = after[-1]["t_s"] - after[0]["t_s"]
    write_hz = ((after[-1]["observations_written"] - after[0]["observations_written"]) / span
                if span > 0 else math.nan)
    summary["write_rate_hz"] = write_hz
    summary["write_rate_limit_hz"] = args.write_rate
    summary["targets"]["writes_at_rate_limit"] = (
        "PASS" if write_hz >= WRITE_SHARE_TARGET * args.write_rate else "MISS")
    (out / "summary.json").write_text(json.dumps(
        {"args": vars(args), "node_parameters": overrides, "summary": summary}, indent=2))
    write_csv(out / "samples.csv", samples)
    write_csv(out / "goals.csv", [asdict(g) for g in goals])
    device = (diag["values"] or {}).get("device", args.device)
    title = (f"mirage soak {args.minutes:g} min on {device}: "
             f"camera {rates.get('camera published (Hz)', math.nan):.1f} Hz, goals "
             f"{rates.get('goals sent (Hz)', math.nan):.1f} Hz ({args.paths} paths x "
             f"{args.horizon} steps, {args.overlap}), capacity {args.capacity}")
    png = save_png(out / "soak.png", figure(samples, summary, title))
    print_summary(summary, rates)
    print(f"  writes after warm-up: {summary['write_rate_hz']:.2f} Hz against observe.max_rate "
          f"{args.write_rate:g} Hz (target >= {WRITE_SHARE_TARGET:.0%})  "
          f"[{summary['targets']['writes_at_rate_limit']}]")
    print(f"  memory: {summary['memory_writes_logged']} writes logged, "
          f"{summary['voxels_new_total']} voxels created, "
          f"{summary['voxels_evicted_total']} evicted")
    print(f"  node: {'DIED' if died else 'up'}, stop code {stop_code}, "
          f"log errors {summary['node_log_errors']}, dropped {summary['dropped_total_end']}")
    print(f"wrote {out / 'summary.json'}, {out / 'samples.csv'}, {out / 'goals.csv'}, {png}")
    return 1 if died or not clean_stop else 0


if __name__ == "__main__":
    raise SystemExit(main())

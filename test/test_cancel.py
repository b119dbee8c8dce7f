"""Cancel and preemption of running ScorePaths goals, against the real node (short mode of
``python -m mirage_ros.bench.cancel``): every request ends its goal with the right code, and the
goal after it gets exactly the answer it got before. The latency figures are the benchmark's
(BENCHMARKS.md); here they are only printed."""

from __future__ import annotations

import json
import subprocess
import sys

from ros_harness import REPO


def test_cancel_and_preempt_storm_leaves_the_node_serving_the_same_answers(tmp_path):
    out = tmp_path / "cancel.json"
    run = subprocess.run(
        [sys.executable, "-m", "mirage_ros.bench.cancel", "--trials", "12", "--paths", "16",
         "--horizon", "6", "--check-every", "2", "--storm", "60", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    print(run.stdout[-2000:])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["wrong_code"] == [] and report["different_answer"] == 0
    for kind in ("cancel", "preempt"):  # 6 of each; every one timed or finished first
        assert len(report[kind]) + report["finished_first"][kind] == 6
        assert len(report[kind]) >= 3  # most requests land while the rollout runs
    assert report["follow_ups"] >= 6 + 3  # every preempting goal + every second cancel
    storm = report["storm"]  # every goal of the storm was answered (the bench waits for all)
    assert sum(storm["codes"].values()) == storm["goals"] == 60

"""The planning benchmark and what it adds to the core: memory-only recall, the planner's
escape rule, the hand-built scenes, and a short closed-loop run of the CLI."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from analytic_room import observe_room

from mirage_ros.geometry import CameraRig, planar_pose
from mirage_ros.memory import LatentMemory
from mirage_ros.memory.fill import fill_nearest
from mirage_ros.model import WorldModel
from mirage_ros.rollout import arc_fan, make_critic
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine
from mirage_ros.rollout.imagination import recall_paths
from mirage_ros.rollout.local_planner import candidate_fan, predicted_collision

REPO = Path(__file__).resolve().parents[1]
FAN = dict(num_paths=5, length=1.5, poses=9, max_curvature=1.2, frame_id="map")


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return WorldModel.default()


# ------------------------------------------------------------------------- core additions


def test_fill_nearest_copies_the_nearest_filled_cell_for_latents_and_depth():
    depth = torch.tensor([[[1.0, 0.0, 0.0, 4.0]]])  # [1,1,4]
    mask = depth > 0
    filled = fill_nearest(depth, mask)
    assert filled.tolist() == [[[1.0, 1.0, 4.0, 4.0]]]  # cell 1 ties? no: 1 from 0, 2 from 3
    latent = torch.arange(8.0).view(1, 2, 1, 4)
    out = fill_nearest(latent, mask)
    assert out[0, :, 0].tolist() == [[0.0, 0.0, 3.0, 3.0], [4.0, 4.0, 7.0, 7.0]]
    empty = torch.zeros(1, 1, 4, dtype=torch.bool)
    assert torch.equal(fill_nearest(depth, empty), depth)  # nothing to copy from
    with pytest.raises(ValueError, match="must match"):
        fill_nearest(depth, mask[..., :3])


def _room_engine(model, mode: str) -> RolloutEngine:
    memory = LatentMemory(channels=model.latent_channels)
    critics = [(make_critic("clearance"), 2.0), (make_critic("goal_pose"), 1.0)]
    engine = RolloutEngine(model, memory, CameraRig.create().cam_to_base, critics,
                           EngineConfig(imagination=mode))
    observe_room(engine, (0.0, 0.6, -0.6), (96, 128))
    return engine


def test_memory_only_imagination_is_the_filled_read_and_writes_nothing(model):
    engine = _room_engine(model, "memory")
    size = len(engine.memory)
    fan = arc_fan(3, length=1.0, poses=5)
    out = engine.score(fan, 4)
    assert len(engine.memory) == size
    im = out.imagined
    assert im.latents.shape == (3, 4, model.latent_channels, 16, 16)
    _, cams = engine.camera_poses(fan, 4, engine.last_view.cam_to_map)
    view = engine.memory.read(cams[:, 1:].reshape(-1, 4, 4), engine.last_view.K_latent.cpu(),
                              (16, 16))
    assert torch.equal(im.mask.reshape(-1, 16, 16), view.mask)
    assert 0.2 < float(im.coverage.mean()) < 1.0  # holes to fill, and something to fill from
    filled = fill_nearest(view.depth, view.mask)
    torch.testing.assert_close(im.merged_depth().reshape(-1, 16, 16), filled)
    torch.testing.assert_close(im.latents.reshape(-1, *im.latents.shape[2:]),
                               fill_nearest(view.latent, view.mask))
    # the same thing through the function the engine calls
    again = recall_paths(engine.memory, engine.last_view.K_latent, cams, (16, 16))
    assert torch.equal(again.latents, im.latents)
    # and it differs from what the diffusion model imagines on the same memory
    imagined = _room_engine(model, "diffusion").score(fan, 4).imagined
    assert not torch.allclose(imagined.latents, im.latents)


def test_engine_config_names_the_imagination_modes():
    with pytest.raises(ValueError, match="imagination must be one of diffusion, memory"):
        EngineConfig(imagination="dream")


def test_a_goal_without_a_position_offers_arcs_that_turn_round():
    pose = (0.0, 0.0, 0.0)
    assert len(candidate_fan(pose, (3.0, 0.0), **FAN)[0]) == 5
    paths, labels = candidate_fan(pose, None, **FAN)
    assert len(paths) == 12 and labels[-1].startswith("turn round")


def test_predicted_collision_reads_the_clearance_cost_above_its_ramp():
    names = ("goal_pose", "clearance", "path_length")
    assert predicted_collision(names, (3.0, 10.0, 1.5))
    assert not predicted_collision(names, (30.0, 1.0, 1.5))  # the ramp's top is not a hit
    assert not predicted_collision(("goal_pose",), (30.0,))  # nothing predicts collisions
    with pytest.raises(ValueError):
        predicted_collision(names, (1.0, 2.0))


# ------------------------------------------------------------------------- the benchmark


def test_benchmark_scenes_are_held_out_and_load():
    from mirage_ros.bench import navigation as nav
    from mirage_ros.train.episodes import split_of_seed

    assert all(split_of_seed(s) == "test" for s in nav.PROCEDURAL_SEEDS)
    for name in nav.HAND_BUILT:
        scene = nav.load(name)
        # Tours have an inside to stay in: the hand-built scenes are walled in.
        from mirage_ros.sim.tour import TourPilot

        pilot = TourPilot(scene, np.random.default_rng(0))
        pilot.start()
        assert pilot.region_enclosed, name
    # No training or data code knows the hand-built scenes.
    train = "".join(p.read_text() for p in (REPO / "mirage_ros" / "train").glob("*.py"))
    assert "bench" not in train and ".xml" not in train
    assert not any(name in train for name in nav.HAND_BUILT)


def test_visibility_sees_what_is_in_front_and_not_behind_a_wall():
    from mirage_ros.bench.navigation import _visible_from

    K = np.array([[50.0, 0, 50.0], [0, 50.0, 50.0], [0, 0, 1]])
    cam = np.eye(4)  # optical frame = map: looking along +z
    depth = np.full((1, 100, 100), 2.0, dtype=np.float32)  # a wall 2 m ahead
    points = np.array([[0.0, 0.0, 1.0],   # in front of the wall
                       [0.0, 0.0, 3.0],   # behind it
                       [0.0, 0.0, -1.0],  # behind the camera
                       [5.0, 0.0, 1.0]])  # outside the view
    assert _visible_from(points, cam[None], depth, K).tolist() == [True, False, False, False]


def test_episodes_are_reproducible_and_goals_obey_the_rules():
    from mirage_ros.bench import navigation as nav
    from mirage_ros.sim.render import Renderer

    kinds = ["pose", "image-seen", "image-unseen"]
    scenes = ["procedural:7", "narrow_aisles"]
    a = nav.plan_episodes(6, scenes, kinds, 12)
    b = nav.plan_episodes(6, scenes, kinds, 12)
    for scene in scenes:  # every scene meets every kind
        assert sorted(e.goal_kind for e in a if e.scene == scene) == sorted(kinds)
    rig = CameraRig.create()
    for x, y in zip(a, b, strict=True):
        assert x.describe() == y.describe()
        straight = math.dist(x.start[:2], x.goal[:2])
        # The shortest route is the taut one: no shorter than the straight line, within the
        # planned range (measured on the 10 cm grid, which overstates by up to 8%).
        assert straight - 1e-6 <= x.shortest <= nav.GOAL_ROUTE[1] + 1e-6
        assert x.shortest >= 0.9 * nav.GOAL_ROUTE[0]
        assert x.shortest <= nav.MAX_DETOUR * straight + 0.2  # cells are 10 cm
        scene = nav.load(x.scene)
        cams = rig.cam_to_map(planar_pose(*x.tour_states.T))
        with Renderer(scene, rig.camera) as renderer:
            depths = np.stack([renderer.render(T)[1] for T in cams])
        spot = np.array([[x.goal[0], x.goal[1], 0.3]])
        seen = bool(nav._visible_from(spot, cams, depths, rig.camera.K)[0])
        if x.goal_kind == "image-unseen":
            assert not seen  # no tour frame had the goal's spot in view
        if x.goal_kind == "image-seen":  # the goal is a pose of the tour itself
            assert np.abs(x.tour_states - np.array(x.goal)).max(axis=1).min() < 1e-9


def test_a_memory_planner_episode_with_an_image_goal_is_reproducible(model):
    from mirage_ros.bench import navigation as nav

    episode = nav.plan_episodes(1, ["cluttered_room"], ["image-seen"], 12)[0]
    a = nav.run_episode(episode, "memory", model)
    b = nav.run_episode(episode, "memory", model)
    assert (a.outcome, a.seconds, a.driven_xy, a.rhos) == \
        (b.outcome, b.seconds, b.driven_xy, b.rhos)
    assert a.decisions >= 1 and a.outcome in ("success", "collision", "timeout")
    # Without a goal position every fan can turn round (9 + 7 candidates), and every decision
    # ranked the candidate that ends nearest the goal.
    assert a.image_candidates == [16] * a.decisions
    assert all(1 <= r <= 16 for r in a.image_ranks) and len(a.image_ranks) == a.decisions
    assert len(a.rhos) == a.decisions


def test_the_cli_runs_every_planner_and_ends_with_one_line_each(tmp_path):
    cmd = [sys.executable, "-m", "mirage_ros.bench.navigation", "--episodes", "1",
           "--scenes", "procedural:7", "--goals", "pose", "--tour-frames", "16",
           "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()[-4:]
    for line, planner in zip(lines, ("geometry", "memory", "imagination", "oracle"),
                             strict=True):
        assert re.fullmatch(rf"{planner}: success [01]/1, collisions [01]/1, SPL \d\.\d{{3}}",
                            line), line
    record = json.loads((tmp_path / "results.json").read_text())
    assert len(record["episodes"]) == 1 and len(record["results"]) == 4
    by = {r["planner"]: r for r in record["results"]}
    # The oracle's clearance is the true depth's: its ranking must follow the truth.
    assert np.nanmean(by["oracle"]["rhos"]) > 0.6
    assert by["geometry"]["rhos"] == []  # no clearance critic, no ranking to measure
    for planner in by:
        assert (tmp_path / f"paths_{planner}.png").stat().st_size > 1000
    # --report prints the same table again from the file, without running anything.
    again = subprocess.run([sys.executable, "-m", "mirage_ros.bench.navigation", "--report",
                            str(tmp_path / "results.json")], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-4:] == lines


def test_collisions_are_classified_by_what_the_camera_critic_can_see():
    from mirage_ros.bench import navigation as nav

    corridor = nav.load("pillar_corridor")
    pole = nav.collision_cause(corridor, (1.8 + 0.04 + 0.2, 0.9))  # 4 cm steel pillar
    assert pole["kind"] == "thin" and pole["size"] == pytest.approx(0.08, abs=1e-6)
    assert pole["distance"] == pytest.approx(0.2, abs=1e-6) and pole["top"] > 2.0
    plate = nav.collision_cause(corridor, (5.0, 0.25))  # a kick plate, 4 cm thick, 10 m long
    assert plate["kind"] == "other" and plate["distance"] == pytest.approx(0.21, abs=1e-6)
    room = nav.load("cluttered_room")
    base = nav.collision_cause(room, (6.3 + 0.15 + 0.05, 0.9))  # the floor lamp's flat base
    assert base["kind"] == "low" and base["top"] == pytest.approx(0.02, abs=1e-6)


def test_critic_parameters_reach_the_planners_critics_and_bad_ones_are_refused(model, capsys):
    from mirage_ros.bench import navigation as nav

    engine = nav.make_engine("imagination", model, CameraRig.create(),
                             {"clearance": {"min_height": 0.05}})
    clearance = next(c for c, _ in engine.critics if c.name == "clearance")
    assert clearance.min_height == 0.05
    with pytest.raises(SystemExit):
        nav.main(["--critic-param", "clearance.min_height=2.0"])  # above max_height
    assert "min_height 2.0 must be below max_height" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        nav.main(["--critic-param", "clearance=0.1"])
    assert "CRITIC.NAME=VALUE" in capsys.readouterr().err


def test_seed_spread_reports_mean_deviation_and_range_per_planner():
    from mirage_ros.bench import navigation as nav

    def summary(success, collisions, spl):
        return {"episodes": 72, "success": success, "collisions": collisions, "spl": spl}

    summaries = {0: {"imagination": summary(49, 8, 0.456)},
                 1: {"imagination": summary(37, 19, 0.369)},
                 2: {"imagination": summary(39, 20, 0.398)}}
    row = nav.seed_spread(summaries, ["imagination"])["imagination"]
    assert row["episodes"] == 72
    assert row["success"]["values"] == [49, 37, 39]
    assert row["success"]["mean"] == pytest.approx(125 / 3)
    assert row["success"]["sd"] == pytest.approx(np.std([49, 37, 39], ddof=1))
    assert (row["collisions"]["min"], row["collisions"]["max"]) == (8, 20)
    line = nav.seed_line("imagination", row)
    assert line.startswith("imagination: success 41.7 +- 6.4 [37.0, 49.0] of 72, collisions")
    one = nav.seed_spread({5: summaries[0]}, ["imagination"])["imagination"]
    assert one["success"]["sd"] == 0.0


def test_the_cli_runs_each_seed_and_ends_with_the_spread(tmp_path):
    cmd = [sys.executable, "-m", "mirage_ros.bench.navigation", "--episodes", "1",
           "--planners", "memory", "--scenes", "procedural:7", "--goals", "pose",
           "--tour-frames", "16", "--seeds", "0,3", "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"memory: success [01]\.0 \+- 0\.0 \[[01]\.0, [01]\.0\] of 1, "
                        r"collisions .* SPL .*", last), last
    spread = json.loads((tmp_path / "seeds.json").read_text())
    assert spread["seeds"] == [0, 3]
    for seed in (0, 3):
        record = json.loads((tmp_path / f"seed-{seed}" / "results.json").read_text())
        assert record["settings"]["engine_options"]["seed"] == seed
    bad = subprocess.run(cmd[:-4] + ["--seeds", "1,1"], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert bad.returncode == 2 and "--seeds must list distinct integers" in bad.stderr

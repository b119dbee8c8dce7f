"""RolloutEngine without ROS: observe -> memory, score -> imagination -> critics -> previews."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from analytic_room import observe_room

from mirage_ros.geometry import CameraRig, planar_pose
from mirage_ros.memory import LatentMemory
from mirage_ros.memory.synthetic import pinhole
from mirage_ros.model import WorldModel
from mirage_ros.rollout import Goal, arc_fan, make_critic
from mirage_ros.rollout.engine import EngineConfig, NoMemoryError, RolloutEngine
from mirage_ros.rollout.imagination import RolloutInterrupted

CRITICS = [("goal_pose", 1.0), ("clearance", 2.0), ("exploration", 0.5), ("path_length", 0.1)]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return WorldModel.default()


def _engine(model) -> RolloutEngine:
    memory = LatentMemory(channels=model.latent_channels)
    return RolloutEngine(model, memory, CameraRig.create().cam_to_base,
                         [(make_critic(n), w) for n, w in CRITICS], EngineConfig(seed=3))


def _observe(engine: RolloutEngine, yaws, size=(96, 160)) -> None:
    observe_room(engine, yaws, size)


def test_no_memory_before_the_first_observation(model):
    engine = _engine(model)
    with pytest.raises(NoMemoryError, match="nothing has been observed"):
        engine.score(arc_fan(2), 2)


def test_score_is_deterministic_and_previews_follow_the_ranking(model):
    engine = _engine(model)
    _observe(engine, [0.0, 0.4])
    assert len(engine.memory) > 0 and engine.last_view is not None
    fan = arc_fan(3, length=1.0, poses=5)
    goal = Goal(pose=torch.from_numpy(planar_pose(2.0, 1.0, 0.0)))
    a = engine.score(fan, 3, goal, num_previews=2)
    b = engine.score(fan, 3, goal, num_previews=2)
    np.testing.assert_array_equal(a.table.costs, b.table.costs)  # same seed, same answer
    assert a.table.names == ("goal_pose", "clearance", "exploration", "path_length")
    assert a.imagined.latents.shape == (3, 3, model.latent_channels, 16, 16)
    assert a.previews.shape == (2, 3, 128, 128)
    assert a.preview_indices == [int(i) for i in np.argsort(-a.table.scores, kind="stable")[:2]]
    # the goal is up and to the left: the arc that turns left ends nearest
    assert np.argmin(a.table.costs[:, 0]) == 2


def test_a_rollout_reads_one_snapshot_while_observations_continue(model):
    engine = _engine(model)
    _observe(engine, [0.0])
    seen = []

    def on_step(done, total):
        if done == 1:  # an observation lands in the middle of the rollout
            _observe(engine, [math.pi])
        seen.append(len(engine.memory))
        return True

    before = len(engine.memory)
    out = engine.score(arc_fan(2, length=0.5, poses=3), 2, on_step=on_step)
    assert len(engine.memory) > before  # the write was not lost ...
    assert len(out.batch.memory) == before  # ... and the rollout's snapshot did not change


def test_on_step_returning_false_stops_between_steps(model):
    engine = _engine(model)
    _observe(engine, [0.0])
    calls = []
    with pytest.raises(RolloutInterrupted, match="after step 1 of 4"):
        engine.score(arc_fan(2), 4, on_step=lambda d, t: calls.append(d) or False)
    assert calls == [1]



def test_should_stop_is_polled_within_every_step_and_stops_there(model):
    engine = _engine(model)
    _observe(engine, [0.0])
    fan = arc_fan(2, length=0.75, poses=4)
    reference = engine.score(fan, 3)
    polls = []
    same = engine.score(fan, 3, should_stop=lambda: polls.append(1) and False)
    np.testing.assert_array_equal(same.table.costs, reference.table.costs)  # polling is inert
    # Between the DiT's blocks of every sampler step and the depth head's layers, not just
    # once a step: that is what bounds the wait for a cancel.
    blocks = len(model.dit.blocks) * engine.config.sampler_steps + len(model.depth_head.trunk)
    assert len(polls) >= 3 * blocks
    for stop_at in (1, blocks // 2, len(polls) // 2, len(polls)):
        count = []
        memory_before = engine.memory.latents.clone()
        with pytest.raises(RolloutInterrupted, match="stopped"):
            engine.score(fan, 3, should_stop=lambda n=stop_at, c=count: c.append(1) or len(c) >= n)
        assert len(count) == stop_at  # nothing more was computed after the answer True
        assert torch.equal(engine.memory.latents, memory_before)
    again = engine.score(fan, 3)  # and the next rollout is the same as before
    np.testing.assert_array_equal(again.table.costs, reference.table.costs)

def test_observe_refuses_bad_input_and_writes_nothing(model):
    engine = _engine(model)
    _observe(engine, [0.0])
    n = len(engine.memory)
    rgb = torch.zeros(96, 160, 3, dtype=torch.uint8)
    K = pinhole(60.0, 96, 160)
    pose = torch.from_numpy(planar_pose(0, 0, 0))
    for args, match in [
        ((rgb.float(), None, K, pose, 1.0), "uint8"),
        ((rgb, torch.zeros(10, 10), K, pose, 1.0), "differ in size"),
        ((rgb, None, K * 0, pose, 1.0), "positive focal"),
        ((rgb, None, K, pose * math.nan, 1.0), "finite 4x4"),
        ((rgb, None, K, pose, math.inf), "stamp"),
    ]:
        with pytest.raises(ValueError, match=match):
            engine.observe(*args)
    assert len(engine.memory) == n


def test_without_depth_the_latent_depth_head_places_the_frame(model):
    engine = _engine(model)
    rgb = torch.full((128, 128, 3), 120, dtype=torch.uint8)
    stats = engine.observe(rgb, None, pinhole(64.0, 128, 128),
                           torch.from_numpy(planar_pose(0, 0, 0)), 0.0)
    assert len(engine.memory) > 0, stats


def test_noise_scale_moves_imagination_to_the_seed_free_frame_at_zero(model):
    """EngineConfig.noise_scale multiplies the flow sampler's starting noise: at 0 every seed
    imagines the same frames, at 1 seeds differ; values outside [0, 1] are refused."""
    fan = arc_fan(2, length=0.75, poses=4)

    def imagined(scale: float, seed: int) -> torch.Tensor:
        memory = LatentMemory(channels=model.latent_channels)
        engine = RolloutEngine(model, memory, CameraRig.create().cam_to_base,
                               [(make_critic(n), w) for n, w in CRITICS],
                               EngineConfig(seed=seed, noise_scale=scale))
        _observe(engine, [0.0, 0.4])
        return engine.score(fan, 3).imagined.latents

    assert not torch.equal(imagined(1.0, 1), imagined(1.0, 2))
    torch.testing.assert_close(imagined(0.0, 1), imagined(0.0, 2), rtol=0, atol=0)
    half = imagined(0.5, 1)
    assert not torch.equal(half, imagined(1.0, 1)) and not torch.equal(half, imagined(0.0, 1))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="noise_scale"):
            EngineConfig(noise_scale=bad)

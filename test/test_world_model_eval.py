"""The shipped weights and the evaluation CLI, end to end on CPU (one held-out scene)."""

import re

import pytest
import torch

from mirage_ros.model import WorldModel
from mirage_ros.model.world_model import DEFAULT_WEIGHTS
from mirage_ros.train import evaluate, generate
from mirage_ros.train.episodes import split_of_seed

TEST_SEED = 7  # a scene seed of the held-out test split


def test_embedded_weights_are_small_fp16_and_trained():
    assert DEFAULT_WEIGHTS.stat().st_size < 30 * 2**20
    model = WorldModel.default()
    assert model.notes["trained"] == "yes"
    params = sum(p.numel() for p in model.parameters())
    assert DEFAULT_WEIGHTS.stat().st_size < 2.2 * params  # ~2 bytes a parameter: fp16
    assert model.latent_channels == 8 and model.downsampling == 8


def test_evaluation_cli_reproduces_the_table_on_a_held_out_scene(tmp_path, capsys):
    assert split_of_seed(TEST_SEED) == "test"
    generate.main(["--out", str(tmp_path / "ds"), "--first-seed", str(TEST_SEED), "--scenes",
                   "1", "--frames-per-episode", "48", "--frame-dt", "0.5"])
    torch.manual_seed(0)
    evaluate.main(["--data", str(tmp_path / "ds"), "--cases", "1", "--steps", "2",
                   "--png-dir", str(tmp_path / "png")])
    out = capsys.readouterr().out

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        assert match, f"{pattern!r} not in\n{out}"
        return float(match.group(1))

    assert number(r"autoencoder PSNR / SSIM \| ([\d.]+) dB") > 28.0
    assert number(r"depth head AbsRel / delta<1.25 \| ([\d.]+) /") < 0.15
    imagined = number(r"imagined step 1: [^|]*\| ([\d.]+) /")
    memory_only = number(r"memory_only step 1: [^|]*\| ([\d.]+) /")
    # A trained model adds to what the memory alone knows (untrained it would be far below).
    assert imagined > memory_only
    # The depth the critics score on imagined frames: the head's, and merged with the memory's.
    head = number(r"imagined step 1: depth AbsRel head / merged[^|]*\| ([\d.]+) /")
    merged = number(r"imagined step 1: depth AbsRel head / merged[^|]*\| [\d.]+ / ([\d.]+);")
    assert 0 < head < 0.25 and 0 < merged < 0.25
    assert (tmp_path / "png" / "rollout_case00.png").stat().st_size > 0


@pytest.mark.parametrize("steps", [1, 2])
def test_imagination_with_shipped_weights_is_deterministic(steps):
    model = WorldModel.default()
    cond = torch.zeros(2, model.dit.cfg.cond_channels, 16, 16)
    a = model.imagine(cond, steps, torch.Generator().manual_seed(3))
    b = model.imagine(cond, steps, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.isfinite(a).all()

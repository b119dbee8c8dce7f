"""The training script on the CPU: a whole run, exact resume, and DDP (2 gloo processes) against
one process with gradient accumulation over the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mirage_ros.model import WorldModel
from mirage_ros.train import generate
from mirage_ros.train import world_model as train
from mirage_ros.train.world_model import TrainConfig, read_state

# A model small enough to train in seconds on 64x64 frames (8x8 latent grid).
TINY = """\
description: tiny test run
autoencoder: {latent_channels: 4, widths: [8, 8, 8], bottleneck: 8}
depth_head: {latent_channels: 4, width: 8, blocks: 1, upsample_widths: [8, 8, 8]}
dit: {latent_channels: 4, grid: 8, patch: 2, hidden: 32, depth: 2, heads: 2}
ae_steps: 4
ae_batch: 8
depth_steps: 4
depth_batch: 8
dit_steps: 6
dit_batch: 8
warmup: 2
rollout_steps: 2
log_every: 2
checkpoint_every: 100
precision: fp32
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    generate.main(["--out", str(root / "ds"), "--scenes", "2", "--frames-per-episode", "12",
                   "--frame-dt", "0.5", "--width", "64", "--height", "64"])
    (root / "tiny.yaml").write_text(TINY)
    return root


def _train(data: Path, out: Path, *extra: str) -> int:
    return train.main(["--config", str(data / "tiny.yaml"), "--data", str(data / "ds"),
                       "--out", str(out), "--device", "cpu", *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _state, _cfg = read_state(path)
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_a_whole_run_writes_model_log_curve_and_config(data, tmp_path):
    assert _train(data, tmp_path / "run") == 0
    run = tmp_path / "run"
    model = WorldModel.load(run / "model.safetensors")
    assert model.notes["trained"] == "yes"
    assert model.notes["dit_steps"] == "6" and model.notes["autoencoder_steps"] == "4"
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in rows} == {"ae", "depth", "dit"}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert (run / "loss.png").stat().st_size > 1000
    assert "rollout_steps: 2" in (run / "config.yaml").read_text()
    with pytest.raises(FileExistsError):  # a finished run is never overwritten by mistake
        _train(data, run)


def test_resume_continues_to_the_same_weights(data, tmp_path):
    _train(data, tmp_path / "straight")
    _train(data, tmp_path / "cut", "--stop-after", "7")  # inside the depth phase
    state = read_state(tmp_path / "cut" / "state.safetensors")[1]
    assert state["done"] == ["ae"] and state["phase"] == "depth" and state["step"] == 3
    _train(data, tmp_path / "cut", "--resume", "--stop-after", "4")  # inside the DiT phase
    _train(data, tmp_path / "cut", "--resume")
    a, b = _weights(tmp_path / "straight" / "state.safetensors"), _weights(
        tmp_path / "cut" / "state.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resume changed the result"
    with pytest.raises(ValueError, match="differs"):
        _train(data, tmp_path / "cut", "--resume", "--set", "dit_lr=0.1")


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="unknown training config fields \\['dit_stpes'\\]"):
        TrainConfig.load(None, ["dit_stpes=3"])
    with pytest.raises(ValueError, match="phases"):
        TrainConfig.load(None, ["phases=[ae, vae]"])


# The depth phase runs with augmentation, a grown column-attention block and imagined examples
# (from a trained DiT): all its random draws must be the global batch's, sliced alike on every
# process. Per case: the phases of the starting model, and the run's settings.
PHASE_ARGS = {
    "dit": ("[ae]", ["--set", "phases=[dit]", "--set", "dit_steps=3",
                     "--set", "rollout_steps=2"]),
    "depth": ("[ae, dit]", ["--set", "phases=[depth]", "--set", "depth_steps=3",
                            "--set", "depth_augment=1.0", "--set", "depth_column_attention=1",
                            "--set", "depth_imagined=0.5", "--set", "depth_imagined_steps=2"]),
}


@pytest.mark.parametrize("phase", ["dit", "depth"])
def test_two_processes_compute_the_step_of_one_with_accumulation(data, tmp_path, phase):
    """Same global batch: 2 DDP processes x 1 micro-batch == 1 process x 2 micro-batches."""
    init_phases, common = PHASE_ARGS[phase]
    init = tmp_path / "init"
    _train(data, init, "--set", f"phases={init_phases}")
    args = ["-m", "mirage_ros.train.world_model", "--config", str(data / "tiny.yaml"),
            "--data", str(data / "ds"), "--device", "cpu", "--init",
            str(init / "model.safetensors"), *common]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", "2", *args, "--out", str(tmp_path / "ddp")],
                   check=True, env=env, timeout=300)
    subprocess.run([sys.executable, *args, "--set", "grad_accum=2", "--out",
                    str(tmp_path / "one")], check=True, env=env, timeout=300)
    a = _weights(tmp_path / "ddp" / "state.safetensors")
    b = _weights(tmp_path / "one" / "state.safetensors")
    start = WorldModel.load(init / "model.safetensors").state_dict()
    part = {"dit": ".dit.", "depth": ".depth_head."}[phase]
    moved = 0.0
    for name, pa in a.items():
        if part not in f".{name}" or name[6:] not in start:  # new blocks have no start
            continue
        # fp32 weights: equal up to the order of float sums; and the steps did move them.
        assert torch.allclose(pa, b[name], atol=1e-5, rtol=1e-4), name
        moved = max(moved, float((pa - start[name[6:]]).abs().max()))
    assert moved > 3e-4  # about 3 Adam steps of lr 3e-4 (dit) or 4e-4 (depth)
    notes = WorldModel.load(tmp_path / "ddp" / "model.safetensors").notes
    assert "2 process(es)" in notes[f"{phase}_steps_per_s"]


def test_a_time_budget_fixes_the_step_count_once(data, tmp_path):
    _train(data, tmp_path / "run", "--set", "phases=[ae]", "--set", "ae_steps=100000",
           "--set", "seconds={ae: 3}")
    state = read_state(tmp_path / "run" / "state.safetensors")[1]
    steps = state["totals"]["ae"]
    assert 40 < steps < 100000
    assert WorldModel.load(tmp_path / "run" / "model.safetensors").notes[
        "autoencoder_steps"] == str(steps)


def test_a_depth_head_grows_floor_geometry_inputs_and_is_evaluated(data, tmp_path, capsys):
    from mirage_ros.train import evaluate

    _train(data, tmp_path / "init", "--set", "phases=[ae]")
    _train(data, tmp_path / "geo", "--init", str(tmp_path / "init" / "model.safetensors"),
           "--set", "phases=[depth]", "--set", "depth_geometry_channels=2")
    model = WorldModel.load(tmp_path / "geo" / "model.safetensors")
    assert model.depth_head.cfg.geometry_channels == 2
    evaluate.main(["--data", str(data / "ds"), "--split", "train", "--checkpoint",
                   str(tmp_path / "geo" / "model.safetensors"), "--parts", "depth",
                   "--device", "cpu"])
    assert "depth head AbsRel" in capsys.readouterr().out


def test_a_depth_head_grows_column_attention_and_trains_on_augmented_frames(data, tmp_path):
    _train(data, tmp_path / "init", "--set", "phases=[ae, depth]")
    init = WorldModel.load(tmp_path / "init" / "model.safetensors")
    args = ["--init", str(tmp_path / "init" / "model.safetensors"), "--set", "phases=[depth]",
            "--set", "depth_column_attention=1", "--set", "depth_augment=1.0"]
    _train(data, tmp_path / "col", *args)
    model = WorldModel.load(tmp_path / "col" / "model.safetensors")
    assert model.depth_head.cfg.column_attention == 1
    block = model.depth_head.trunk[-1]
    assert block.out.weight.abs().sum() > 0  # trained away from its zero start
    # Everything the head had before came along (then trained): same names and shapes.
    old = init.depth_head.state_dict()
    new = model.depth_head.state_dict()
    assert all(new[k].shape == v.shape for k, v in old.items())
    # The notes of the parts this run left alone stay; the depth head's run is added to them.
    assert model.notes["config"] == f"{init.notes['config']}; depth head: tiny test run"
    episodes = model.notes["train_episodes"]
    assert episodes.startswith(init.notes["train_episodes"] + "; depth head: ")
    assert model.notes["lineage"].endswith("(depth head only, cpu)")
    # Augmented batches come from the step generator, not the global RNG: a run cut after 2
    # steps and resumed (which does not reseed) ends where the uninterrupted one did.
    _train(data, tmp_path / "cut", *args, "--stop-after", "2")
    _train(data, tmp_path / "cut", *args[2:], "--resume")  # the state holds the weights
    def described(notes: dict) -> dict:  # all but the timings
        return {k: v for k, v in notes.items() if "per_s" not in k and "seconds" not in k}

    resumed = WorldModel.load(tmp_path / "cut" / "model.safetensors").notes
    assert described(resumed) == described(model.notes)
    a, b = (_weights(tmp_path / r / "state.safetensors") for r in ("col", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_run_from_init_describes_itself_alone(data, tmp_path):
    _train(data, tmp_path / "init", "--set", "phases=[ae]", "--set", "description=first")
    _train(data, tmp_path / "all", "--init", str(tmp_path / "init" / "model.safetensors"),
           "--set", "description=second")
    notes = WorldModel.load(tmp_path / "all" / "model.safetensors").notes
    assert notes["config"] == "second" and "lineage" not in notes


def test_depth_augment_and_imagined_are_validated():
    with pytest.raises(ValueError, match="depth_augment"):
        TrainConfig.load(None, ["depth_augment=1.5"])
    with pytest.raises(ValueError, match="depth_imagined"):
        TrainConfig.load(None, ["depth_imagined=-0.1"])
    with pytest.raises(ValueError, match="depth_imagined_steps"):
        TrainConfig.load(None, ["depth_imagined_steps=0"])


def test_the_depth_head_trains_on_the_dits_own_frames(data, tmp_path):
    full = tmp_path / "full" / "model.safetensors"
    _train(data, tmp_path / "full")  # autoencoder, depth head and DiT
    only = ["--init", str(full), "--set", "phases=[depth]", "--set", "depth_steps=2"]
    imagined = [*only, "--set", "depth_imagined=1.0", "--set", "depth_imagined_steps=2"]
    _train(data, tmp_path / "real", *only)
    _train(data, tmp_path / "imagined", *imagined)

    def first_loss(run: str) -> float:
        rows = [json.loads(x) for x in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        return rows[0]["loss"]

    # The same batch indices, other latents: the examples really are the DiT's frames.
    assert first_loss("real") != first_loss("imagined")
    assert torch.isfinite(torch.tensor(first_loss("imagined")))
    # Resumed mid-phase, the rollouts' draws come from the step generator too.
    _train(data, tmp_path / "cut", *imagined, "--stop-after", "1")
    _train(data, tmp_path / "cut", *imagined[2:], "--resume")
    a, b = (_weights(tmp_path / r / "state.safetensors") for r in ("imagined", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Without a trained DiT there is nothing to imagine with.
    _train(data, tmp_path / "ae", "--set", "phases=[ae]")
    with pytest.raises(ValueError, match="trained DiT"):
        _train(data, tmp_path / "none", "--init", str(tmp_path / "ae" / "model.safetensors"),
               "--set", "phases=[depth]", "--set", "depth_imagined=0.5")


def test_augmentation_recolours_and_mirrors_images_and_targets_alike():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    cell, pix, geo = torch.rand(6, 2, 2), torch.rand(6, 16, 16), torch.rand(6, 2, 2, 2)
    draws = train.augment_draws(6, 1.0, torch.device("cpu"), gen)
    assert 0 < int(draws.flip.sum()) < 6  # this seed mirrors some and keeps some
    x2, cell2, pix2, geo2 = train.recolour_and_mirror(x, cell, pix, geo, draws)
    f = draws.flip
    assert torch.equal(cell2[f], cell[f].flip(-1)) and torch.equal(cell2[~f], cell[~f])
    assert torch.equal(pix2[f], pix[f].flip(-1)) and torch.equal(geo2[f], geo[f].flip(-1))
    assert not torch.allclose(x2, x) and x2.min() >= 0 and x2.max() <= 1
    # Strength 0 leaves colours alone; only the mirror remains.
    still = train.augment_draws(6, 0.0, torch.device("cpu"), gen)
    x3, *_ = train.recolour_and_mirror(x, cell, pix, geo, still)
    expected = torch.where(still.flip.view(-1, 1, 1, 1), x.flip(-1), x)
    assert torch.allclose(x3, expected, atol=1e-6)

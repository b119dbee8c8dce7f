"""World model: shapes, determinism, checkpoint round trips and refusal of bad files (CPU)."""

import json
import struct

import numpy as np
import pytest
import torch

from mirage_ros.geometry import PinholeCamera, planar_pose
from mirage_ros.model import CheckpointError, WorldModel
from mirage_ros.model.autoencoder import AutoencoderConfig, psnr, ssim
from mirage_ros.model.depth_head import (
    ColumnAttention,
    DepthHeadConfig,
    LatentDepthHead,
    with_column_attention,
)
from mirage_ros.model.dit import DiTConfig
from mirage_ros.model.flow import euler_sample, flow_loss
from mirage_ros.model.world_model import relative_rays


def tiny() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(
        AutoencoderConfig(latent_channels=4, widths=(8, 8, 8), bottleneck=8),
        DepthHeadConfig(latent_channels=4, width=8, blocks=1, upsample_widths=(8, 8, 8)),
        DiTConfig(latent_channels=4, hidden=32, depth=2, heads=2),
    ).eval()


def test_shapes_through_the_whole_model():
    m = tiny()
    rgb = torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8)
    z = m.encode(rgb)
    assert z.shape == (2, 4, 16, 16)
    assert m.decode(z).shape == (2, 3, 128, 128)
    cell, pix = m.depth(z, pixels=True)
    assert cell.shape == (2, 16, 16) and pix.shape == (2, 128, 128)
    assert (cell > 0).all() and (pix > 0).all()
    mask = torch.rand(2, 16, 16) > 0.5
    rays = torch.randn(2, 6, 16, 16)
    cond = m.condition(z, cell, mask, z, rays)
    assert cond.shape == (2, m.dit.cfg.cond_channels, 16, 16)
    # holes carry nothing: a masked-out cell's memory channels are exactly zero
    assert (cond[:, :5][~mask[:, None].expand(-1, 5, -1, -1)] == 0).all()
    out = m.imagine(cond, steps=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == z.shape and torch.isfinite(out).all()


def test_imagination_is_deterministic_with_a_fixed_seed():
    m = tiny()
    cond = torch.randn(3, m.dit.cfg.cond_channels, 16, 16)
    # a fresh DiT outputs zero (adaLN-Zero); perturb it so the test sees the network
    with torch.no_grad():
        for p in m.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    a = m.imagine(cond, steps=3, generator=torch.Generator().manual_seed(7))
    b = m.imagine(cond, steps=3, generator=torch.Generator().manual_seed(7))
    c = m.imagine(cond, steps=3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_euler_sampler_is_exact_for_a_straight_flow():
    # If v = eps - x0 exactly (known x0), one Euler step from t=1 lands on x0.
    x0 = torch.randn(2, 4, 8, 8)
    noise = torch.randn_like(x0)
    out = euler_sample(lambda x, t: noise - x0, noise, steps=1)
    torch.testing.assert_close(out, x0)
    loss = flow_loss(lambda x, t: noise - x0, x0, torch.rand(2), noise)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_metrics_on_known_cases():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    # uniform error of 0.1 -> MSE 0.01 -> 20 dB
    y = (x * 0.5 + 0.1).clamp(0, 1)
    assert psnr(torch.full_like(x, 0.5), torch.full_like(x, 0.6)) == pytest.approx(20.0, abs=1e-3)
    assert (ssim(x, y) < 1).all()


def test_relative_rays_are_the_identity_rays_for_no_motion():
    cam = PinholeCamera.from_hfov(np.pi / 2, 128, 128).scaled(16, 16)
    pose = planar_pose(1.0, 2.0, 0.3)[None]
    rays = relative_rays(cam.K, pose, pose, (16, 16))
    assert rays.shape == (1, 6, 16, 16)
    assert torch.allclose(rays[:, 3:], torch.zeros(1, 3, 16, 16), atol=1e-6)  # no moment
    # centre-ish cell looks along +z of the camera
    assert rays[0, 2].min() > 0


def test_checkpoint_round_trip_is_exact_in_fp16(tmp_path):
    m = tiny()
    m.latent_mean.fill_(0.25)
    m.notes = {"trained": "test"}
    path = tmp_path / "wm.safetensors"
    m.save(path)
    loaded = WorldModel.load(path)
    assert loaded.notes == {"trained": "test"}
    assert loaded.dit.cfg == m.dit.cfg
    for (name, a), (_, b) in zip(m.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        assert torch.equal(a.half().float() if a.is_floating_point() and "latent" not in name
                           else a, b), name
    loaded.save(tmp_path / "again.safetensors")
    again = WorldModel.load(tmp_path / "again.safetensors")
    for a, b in zip(loaded.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _header(data: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8: 8 + n])


def test_tampered_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    m = tiny()
    path = tmp_path / "wm.safetensors"
    m.save(path)
    data = path.read_bytes()

    flipped = bytearray(data)
    flipped[-3] ^= 0x40  # one weight bit
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        WorldModel.load(tmp_path / "flip.safetensors")

    (tmp_path / "short.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        WorldModel.load(tmp_path / "short.safetensors")

    n, header = _header(data)
    header["__metadata__"]["version"] = "99"
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    (tmp_path / "v99.safetensors").write_bytes(struct.pack("<Q", len(new)) + new + data[8 + n:])
    with pytest.raises(CheckpointError, match="version 99"):
        WorldModel.load(tmp_path / "v99.safetensors")

    with pytest.raises(CheckpointError, match="cannot read"):
        WorldModel.load(tmp_path / "missing.safetensors")


def test_checkpoint_that_does_not_match_the_architecture_is_refused(tmp_path):
    from mirage_ros.model.checkpoint import load_checkpoint, save_checkpoint

    m = tiny()
    m.save(tmp_path / "wm.safetensors")
    tensors, configs, notes = load_checkpoint(tmp_path / "wm.safetensors")
    configs["dit"]["depth"] = 3
    save_checkpoint(tmp_path / "bad.safetensors", tensors, configs, notes)
    with pytest.raises(CheckpointError, match="does not match"):
        WorldModel.load(tmp_path / "bad.safetensors")


def test_a_dit_grown_with_the_trust_channel_predicts_what_it_did_until_trained():
    from mirage_ros.model.dit import with_memory_trust
    from mirage_ros.model.world_model import TRUST_SCALE

    m = tiny()
    with torch.no_grad():
        for p in m.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    z = torch.randn(2, 4, 16, 16)
    depth = torch.rand(2, 16, 16) + 0.5
    mask = torch.rand(2, 16, 16) > 0.3
    rays = torch.randn(2, 6, 16, 16)
    offset = torch.where(torch.rand(2, 16, 16) > 0.5, torch.rand(2, 16, 16),
                         torch.full((2, 16, 16), float("inf")))
    cond = m.condition(z, depth, mask, z, rays, offset)  # no trust channel: offset ignored
    assert cond.shape[1] == m.dit.cfg.cond_channels
    before = m.imagine(cond, steps=2, generator=torch.Generator().manual_seed(3))
    m.dit = with_memory_trust(m.dit)
    assert m.dit.cfg.memory_trust and m.dit.cfg.cond_channels == cond.shape[1] + 1
    grown = m.condition(z, depth, mask, z, rays, offset)
    trust = grown[:, -1]
    # 1 for a cell seen from exactly here, falling with the offset, 0 for fused cells and holes
    expected = torch.exp(-offset / TRUST_SCALE) * mask
    torch.testing.assert_close(trust, expected)
    assert float(trust[~mask].abs().max()) == 0.0
    assert torch.equal(m.condition(z, depth, mask, z, rays)[:, -1], torch.zeros(2, 16, 16))
    after = m.imagine(grown, steps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(before, after)
    # and the new channel is live: its weights train
    with torch.no_grad():
        m.dit.embed.weight[:, -1].fill_(0.5)
    moved = m.imagine(grown, steps=2, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(before, moved)


def _columned(blocks: int = 1) -> tuple[WorldModel, LatentDepthHead]:
    """A tiny model with a perturbed head, and that head grown by ``blocks`` blocks."""
    m = tiny()
    with torch.no_grad():  # a trained-looking head, so that "unchanged" means something
        for p in m.depth_head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    grown = with_column_attention(m.depth_head, blocks).eval()
    return m, grown


def test_a_depth_head_grown_with_column_attention_predicts_what_it_did_until_trained():
    m, grown = _columned()
    z = torch.randn(3, 4, 16, 16)
    with torch.no_grad():
        a_cell, a_pix = m.depth_head(z, pixels=True)
        b_cell, b_pix = grown(z, pixels=True)
    assert torch.equal(a_cell, b_cell) and torch.equal(a_pix, b_pix)
    assert grown.cfg.column_attention == 1 and len(grown.trunk) == len(m.depth_head.trunk) + 1
    with pytest.raises(ValueError, match="drop column-attention"):
        with_column_attention(with_column_attention(m.depth_head, 2), 1)


def test_column_attention_mixes_cells_of_one_column_only_at_any_height():
    torch.manual_seed(3)
    block = ColumnAttention(8, heads=2, span=4).eval()
    block.norm = torch.nn.Identity()  # the group norm alone couples columns, through its stats
    with torch.no_grad():
        block.out.weight.normal_()
        block.offset_bias.normal_()
        for h in (8, 16, 11):  # offsets past the span share its last bias
            x = torch.randn(2, 8, h, 6)
            y = block(x)
            x2 = x.clone()
            x2[:, :, 1, 3] += 1.0
            changed = (block(x2) - y).abs().sum(dim=(0, 1, 2)) > 0
            assert changed.tolist() == [False, False, False, True, False, False]


def test_a_column_attention_head_round_trips_through_a_checkpoint(tmp_path):
    m, grown = _columned()
    with torch.no_grad():  # every parameter of the block away from its initial value
        for p in grown.trunk[-1].parameters():
            p.add_(0.1 * torch.randn_like(p))
    m.depth_head = grown
    m.save(tmp_path / "m.safetensors")
    back = WorldModel.load(tmp_path / "m.safetensors")
    assert back.depth_head.cfg.column_attention == 1
    z = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        half = grown.half().float()  # the file is fp16
        assert torch.equal(back.depth_head(z)[0], half(z)[0])


def test_column_attention_weighs_cells_by_their_signed_row_offset():
    """With queries and keys zero, a cell's attention over its column is the softmax of the
    offset biases: below and above are told apart, and offsets past the span share one bias."""
    h, span = 5, 2
    block = ColumnAttention(h, heads=1, span=span).eval()
    block.norm = torch.nn.Identity()
    bias = torch.tensor([-3.0, 0.0, 1.0, 2.0, 5.0])  # offsets key - query = -2 .. 2
    with torch.no_grad():
        block.qkv.weight.zero_()
        block.qkv.bias.zero_()
        block.qkv.weight[2 * h:, :, 0, 0] = torch.eye(h)  # v = x; q = k = 0
        block.out.weight.copy_(torch.eye(h)[:, :, None, None])
        block.out.bias.zero_()
        block.offset_bias.copy_(bias[None])
        x = torch.eye(h).view(1, h, h, 1)  # channel c is 1 at row c: v reads out the key row
        attention = (block(x) - x)[0, :, :, 0].T  # [query row, key row]
    for q in range(h):
        expect = torch.softmax(bias[(torch.arange(h) - q).clamp(-span, span) + span], 0)
        assert torch.allclose(attention[q], expect, atol=1e-6), q


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_column_attention_on_cuda_in_bf16_matches_the_cpu():
    m, grown = _columned()
    with torch.no_grad():
        grown.trunk[-1].out.weight.normal_(std=0.05)
        grown.trunk[-1].offset_bias.normal_()
        z = torch.randn(4, 4, 16, 16)
        ref = grown(z)[0]
        gpu = grown.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = gpu(z.cuda())[0].float().cpu()
    assert ((out - ref).abs() / ref).max() < 0.05

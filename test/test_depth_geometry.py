"""The depth head's floor geometry: the channels are exact, a grown head starts where the old one
was, a geometry head refuses to run blind, and the whole pipeline (checkpoint, engine) carries
it."""

import numpy as np
import pytest
import torch

from mirage_ros.geometry import CameraRig, planar_pose
from mirage_ros.geometry.rays import floor_rays_torch
from mirage_ros.memory import LatentMemory
from mirage_ros.model import WorldModel
from mirage_ros.model.autoencoder import AutoencoderConfig
from mirage_ros.model.depth_head import DepthHeadConfig, LatentDepthHead, with_geometry
from mirage_ros.model.dit import DiTConfig
from mirage_ros.rollout import make_critic
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine
from mirage_ros.rollout.paths import arc_fan


def _camera(height: float, pitch_deg: float, roll_deg: float, yaw: float) -> torch.Tensor:
    """An optical camera (z forward, y down) at ``height`` over the floor, pitched down."""
    rig = CameraRig.create(height_m=height, pitch_deg=pitch_deg)
    cam = torch.from_numpy(planar_pose(0.3, -1.2, yaw) @ rig.cam_to_base)
    c, s = np.cos(np.radians(roll_deg)), np.sin(np.radians(roll_deg))
    roll = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                        dtype=cam.dtype)
    return cam @ roll


@pytest.mark.parametrize("height,pitch,roll", [(0.5, 10.0, 0.0), (0.25, -5.0, 3.0),
                                               (1.0, 20.0, -4.0)])
def test_floor_channels_put_the_floor_where_it_is(height, pitch, roll):
    K = torch.tensor([[8.0, 0, 8.0], [0, 8.0, 8.0], [0, 0, 1]], dtype=torch.float64)
    cam = _camera(height, pitch, roll, yaw=0.7)
    inv_depth, s = floor_rays_torch(K, cam, 16, 16)
    v, u = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    ray = torch.stack([(u - 8) / 8, (v - 8) / 8, torch.ones_like(u)], -1).double()
    hits = inv_depth > 1e-3
    assert hits.sum() > 40 and (~hits).sum() > 10  # floor below the horizon, not above
    depth = 1.0 / inv_depth[hits].double()
    points = (cam[:3, :3] @ (ray[hits] * depth[:, None]).T).T + cam[:3, 3]
    assert torch.allclose(points[:, 2], torch.zeros_like(depth), atol=1e-4)
    assert torch.allclose(inv_depth, s / height, atol=1e-6)


def test_a_grown_head_starts_where_the_old_one_was_and_needs_its_geometry():
    torch.manual_seed(0)
    head = LatentDepthHead(DepthHeadConfig(latent_channels=4, width=8, blocks=1,
                                           upsample_widths=(8, 8, 8))).eval()
    grown = with_geometry(head, 2).eval()
    z = torch.randn(3, 4, 16, 16)
    geometry = torch.randn(3, 2, 16, 16)
    with torch.no_grad():
        a, pa = head(z, pixels=True)
        b, pb = grown(z, pixels=True, geometry=geometry)
    assert torch.equal(a, b) and torch.equal(pa, pb)
    with pytest.raises(ValueError, match="floor geometry"):
        grown(z)
    with pytest.raises(ValueError, match="does not fit"):
        grown(z, geometry=torch.zeros(3, 2, 8, 8))


def _tiny_geometry_model() -> WorldModel:
    torch.manual_seed(0)
    m = WorldModel(AutoencoderConfig(latent_channels=4, widths=(8, 8, 8), bottleneck=8),
                   DepthHeadConfig(latent_channels=4, width=8, blocks=1,
                                   upsample_widths=(8, 8, 8), geometry_channels=2),
                   DiTConfig(latent_channels=4, hidden=32, depth=2, heads=2))
    return m.eval()


def test_geometry_heads_survive_the_checkpoint_and_drive_the_engine(tmp_path):
    m = _tiny_geometry_model()
    m.save(tmp_path / "m.safetensors")
    loaded = WorldModel.load(tmp_path / "m.safetensors")
    assert loaded.depth_head.cfg.geometry_channels == 2
    rig = CameraRig.create()
    engine = RolloutEngine(loaded, LatentMemory(channels=4), rig.cam_to_base,
                           [(make_critic("clearance"), 1.0)], EngineConfig(seed=1))
    rgb = torch.randint(0, 256, (128, 128, 3), dtype=torch.uint8)
    K = np.array([[64.0, 0, 64.0], [0, 64.0, 64.0], [0, 0, 1]])
    engine.observe(rgb, None, K, torch.from_numpy(planar_pose(0, 0, 0)), 0.0)  # depth from RGB
    assert len(engine.memory) > 0
    result = engine.score(arc_fan(3, length=1.0, poses=5), 3)
    assert result.imagined is not None and torch.isfinite(result.imagined.latents).all()
    assert (result.batch.depth > 0).all()

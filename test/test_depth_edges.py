"""The near side of a depth edge is a real surface: small obstacles must enter the memory.

``reduce_depth`` keeps the near cluster of a mixed block, ``cell_validity`` keeps the near side of
a step (and a pole one cell wide), while far sides and flying points are still rejected.
"""

from __future__ import annotations

import math

import pytest
import torch

from mirage_ros.memory import LatentMemory, MemoryConfig, reduce_depth
from mirage_ros.memory.camera import validate_intrinsics
from mirage_ros.memory.depth import cell_validity
from mirage_ros.memory.synthetic import pinhole

H = W = 16
K16 = pinhole(8.0, H, W)  # 90 degree field of view, cx = cy = 8


def masks(depth_hw: torch.Tensor):
    intr = validate_intrinsics(K16, (1,), "K").to(torch.float32)
    return cell_validity(
        depth_hw[None].to(torch.float32),
        intr,
        min_depth=0.05,
        max_depth=20.0,
        edge_threshold=0.1,
        max_incidence_deg=75.0,
    )


def box_in_front_of_wall() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    depth = torch.full((H, W), 2.0)
    box = torch.zeros(H, W, dtype=torch.bool)
    box[6:10, 6:10] = True
    depth[box] = 1.0
    ring = torch.zeros(H, W, dtype=torch.bool)  # wall cells 4-adjacent to the box
    ring[5, 6:10] = ring[10, 6:10] = ring[6:10, 5] = ring[6:10, 10] = True
    return depth, box, ring


def eye() -> torch.Tensor:
    return torch.eye(4, dtype=torch.float64)[None]


# ----------------------------------------------------------------------------- cell_validity
def test_box_in_front_of_wall_keeps_all_its_cells():
    depth, box, ring = box_in_front_of_wall()
    m = masks(depth)
    valid = m.valid[0]
    assert bool(valid[box].all())  # all 16 box cells, border ring included
    assert not bool(valid[ring].any())  # far side of the step
    assert not bool(m.edge_ok[0][ring].any())
    assert bool(valid[~box & ~ring].all())  # the rest of the wall (diagonal corners too)
    assert bool(m.grazing_ok[0][box].all())  # border cells get the box's own normal


def test_box_in_front_of_wall_through_write_and_read():
    depth, box, ring = box_in_front_of_wall()
    mem = LatentMemory(channels=2)
    lat = torch.randn(1, 2, H, W, generator=torch.Generator().manual_seed(0))
    stats = mem.write(lat, depth[None], K16, eye(), 0.0)
    assert stats.rejected_edge == int(ring.sum()) == 16
    assert stats.fused == H * W - 16
    view = mem.read(eye(), K16, (H, W))
    assert bool(view.mask[0][box].all())
    assert torch.equal(view.depth[0][box], torch.ones(16))
    assert torch.equal(view.latent[0][:, box], lat[0][:, box])


def test_flying_cell_between_surfaces_is_rejected():
    depth = torch.full((H, W), 2.0)
    depth[:, :8] = 1.0
    depth[:, 8] = 1.5  # between the near (1 m) and the far (2 m) surface
    m = masks(depth)
    assert not bool(m.valid[0, :, 8].any())
    assert not bool(m.edge_ok[0, :, 8].any())
    assert bool(m.valid[0, :, 7].all())  # near side of the step
    assert not bool(m.valid[0, :, 9].any())  # far side of the step
    assert bool(m.valid[0, :, :7].all()) and bool(m.valid[0, :, 10:].all())


@pytest.mark.parametrize("column", [1, 3, 8, 12, 14])
def test_pole_one_cell_wide_is_kept(column: int):
    depth = torch.full((H, W), 2.0)
    depth[:, column] = 1.0
    m = masks(depth)
    assert bool(m.valid[0, :, column].all())
    assert not bool(m.valid[0, :, column - 1].any())
    assert not bool(m.valid[0, :, column + 1].any())


def test_single_cell_obstacle_is_kept():
    depth = torch.full((H, W), 2.0)
    depth[5, 11] = 1.0
    m = masks(depth)
    assert bool(m.valid[0, 5, 11])
    assert int(m.valid[0].sum()) == H * W - 4  # its four wall neighbours are far sides


def test_receding_border_of_a_tilted_box_is_kept():
    # Box front turned about the vertical axis: its depth grows about 6 % per cell to the right,
    # so its right border cell is farther than its inner neighbour but in front of the wall.
    depth = torch.full((H, W), 2.0)
    u = torch.arange(W, dtype=torch.float32) + 0.5 - 8.0
    front = 1.0 / (1.0 - 0.45 * u / 8.0)  # a plane: inverse depth affine in u
    depth[6:10, 6:10] = front[6:10]
    m = masks(depth)
    assert bool(m.valid[0, 6:10, 6:10].all())
    assert not bool(m.valid[0, 6:10, 5].any()) and not bool(m.valid[0, 6:10, 10].any())


# ----------------------------------------------------------------------------- reduce_depth
def reduce_depth_old(depth_hw, h, w, *, min_valid_fraction=0.5, max_relative_gap=0.1):
    """A copy of ``reduce_depth`` before mixed blocks kept their near cluster."""
    b, big_h, big_w = depth_hw.shape
    kh, kw = big_h // h, big_w // w
    d = depth_hw.to(torch.float32)
    valid = torch.isfinite(d) & (d > 0)
    d = torch.where(valid, d, torch.full_like(d, float("inf")))
    blocks = d.reshape(b, h, kh, w, kw).permute(0, 1, 3, 2, 4).reshape(b, h, w, kh * kw)
    ordered = blocks.sort(dim=-1).values
    count = valid.reshape(b, h, kh, w, kw).sum(dim=(2, 4))
    median_idx = ((count - 1).clamp(min=0) // 2)[..., None]
    median = ordered.gather(-1, median_idx)[..., 0]
    gaps = ordered[..., 1:] - ordered[..., :-1]
    in_valid_run = torch.arange(1, kh * kw, device=d.device) < count[..., None]
    max_gap = torch.where(in_valid_run, gaps, torch.zeros_like(gaps)).amax(dim=-1)
    min_count = max(1, math.ceil(min_valid_fraction * kh * kw - 1e-9))
    ok = (count >= min_count) & (max_gap <= max_relative_gap * median)
    return torch.where(ok, median, torch.zeros_like(median))


def pole_block(near_columns: int, near: float = 1.0, far: float = 2.0) -> torch.Tensor:
    d = torch.full((1, 8, 8), far)
    d[0, :, 2 : 2 + near_columns] = near
    return d


@pytest.mark.parametrize("columns", [2, 3, 4, 6])
def test_mixed_block_returns_its_near_cluster(columns: int):
    assert float(reduce_depth(pole_block(columns), 1, 1)[0, 0, 0]) == 1.0
    assert float(reduce_depth_old(pole_block(columns), 1, 1)[0, 0, 0]) == 0.0


def test_near_cluster_takes_its_own_lower_median():
    d = pole_block(3)
    d[0, :, 2:5] = torch.linspace(1.0, 1.046, 24).reshape(8, 3)  # a rounded pole, no inner gap
    expected = float(torch.linspace(1.0, 1.046, 24)[11])
    assert float(reduce_depth(d, 1, 1)[0, 0, 0]) == expected
    # Three surfaces: the cut is at the first gap, the middle one is never chosen.
    d = torch.full((1, 8, 8), 3.0)
    d[0, :, :3] = 1.0
    d[0, :, 3:5] = 2.0
    assert float(reduce_depth(d, 1, 1)[0, 0, 0]) == 1.0


def test_small_near_cluster_is_invalid():
    assert float(reduce_depth(pole_block(1), 1, 1)[0, 0, 0]) == 0.0  # 12.5 % < 25 %
    assert float(reduce_depth(pole_block(1), 1, 1, min_near_fraction=0.125)[0, 0, 0]) == 1.0
    # A near outlier pixel in front of a pole: the near cluster is the outlier, too small.
    d = pole_block(3)
    d[0, 0, 0] = 0.5
    assert float(reduce_depth(d, 1, 1)[0, 0, 0]) == 0.0


def test_invalid_pixels_never_form_a_near_cluster():
    for bad in (float("nan"), float("inf"), float("-inf"), 0.0, -1.0):
        d = pole_block(3)
        d[0, :, 2:5] = bad  # where the pole would be: the wall alone remains, 62.5 % valid
        assert float(reduce_depth(d, 1, 1)[0, 0, 0]) == 2.0
        d = torch.full((1, 8, 8), bad)
        d[0, :, 6:] = 1.0  # near cluster of 25 %, but only 25 % valid
        assert float(reduce_depth(d, 1, 1)[0, 0, 0]) == 0.0
        d[0, :, 2:6] = 2.0
        assert float(reduce_depth(d, 1, 1)[0, 0, 0]) == 1.0
        d[0, :, :5] = 2.0
        d[0, :, 5:7] = bad
        d[0, :, 7] = 1.0  # 12.5 % near, 75 % valid
        assert float(reduce_depth(d, 1, 1)[0, 0, 0]) == 0.0


def random_depth(seed: int, b: int = 4, size: int = 64, mixed: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    coef = torch.rand(b, 3, generator=gen)
    inv = 0.3 + coef[:, :1, None] * 0.4 + (coef[:, 1:2, None] - 0.5) * 0.004 * u
    inv = inv + (coef[:, 2:3, None] - 0.5) * 0.004 * v  # tilted planes
    d = 1.0 / inv + 0.002 * torch.rand(b, size, size, generator=gen)
    holes = torch.rand(b, size, size, generator=gen) < 0.2
    d = torch.where(holes, torch.full_like(d, float("nan")), d)
    if mixed:
        # Per block, the first k columns step to half the depth: k = 1 is a near side too small
        # to keep, k >= 2 one of at least 25 %. Plus a few near outlier pixels.
        k = torch.randint(0, 8, (b, size // 8, size // 8), generator=gen)
        k_px = k.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)
        d = torch.where((u % 8)[None] < k_px, d * 0.5, d)
        d = torch.where(torch.rand(b, size, size, generator=gen) < 0.01, d * 0.3, d)
    return d.to(torch.float32)


@pytest.mark.parametrize("seed", range(4))
def test_blocks_without_a_gap_are_bit_identical_to_the_old_rule(seed: int):
    smooth = random_depth(seed)
    old = reduce_depth_old(smooth, 8, 8)
    assert bool((old > 0).float().mean() > 0.5)
    assert torch.equal(reduce_depth(smooth, 8, 8), old)
    mixed = random_depth(seed, mixed=True)
    old = reduce_depth_old(mixed, 8, 8)
    new = reduce_depth(mixed, 8, 8)
    kept = old > 0
    assert bool((~kept & (new > 0)).any())  # some mixed blocks now keep their near side
    assert torch.equal(new[kept], old[kept])  # gap-free blocks: exactly the old result
    assert torch.equal(reduce_depth(mixed, 8, 8, min_near_fraction=1.0), old)
    # The near cluster's depth was measured, and is never behind the block's median.
    blocks = mixed.reshape(-1, 8, 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(-1, 8, 8, 64)
    changed = ~kept & (new > 0)
    assert bool((blocks[changed] == new[changed][:, None]).any(dim=-1).all())
    assert bool((new[changed] <= blocks[changed].nanmedian(dim=-1).values).all())


def test_reduce_depth_is_deterministic_and_batch_independent():
    d = random_depth(7, mixed=True)
    a = reduce_depth(d, 8, 8)
    assert torch.equal(a, reduce_depth(d.clone(), 8, 8))
    for i in range(d.shape[0]):
        assert torch.equal(reduce_depth(d[i : i + 1], 8, 8)[0], a[i])


def test_min_near_fraction_is_validated():
    d = pole_block(3)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="min_near_fraction"):
            reduce_depth(d, 1, 1, min_near_fraction=bad)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="depth_min_near_fraction"):
            MemoryConfig(channels=1, depth_min_near_fraction=bad)
    assert MemoryConfig(channels=1).depth_min_near_fraction == 0.25


# ----------------------------------------------------------------------------- end to end
def test_pole_thinner_than_a_cell_enters_the_memory():
    # 128 x 128 depth over a 16 x 16 latent grid (8 x 8 pixel blocks): a wall at 2 m and a pole
    # 3 pixels wide at 1 m inside latent column 9. Before, the mixed blocks were rejected.
    depth = torch.full((1, 128, 128), 2.0)
    depth[0, :, 74:77] = 1.0
    lat = torch.randn(1, 2, H, W, generator=torch.Generator().manual_seed(1))
    mem = LatentMemory(channels=2)
    stats = mem.write(lat, depth, K16, eye(), 0.0)
    assert stats.rejected_depth == 0
    assert stats.rejected_edge == 2 * H  # the wall columns either side of the pole
    view = mem.read(eye(), K16, (H, W))
    assert bool(view.mask[0, :, 9].all())
    assert torch.equal(view.depth[0, :, 9], torch.ones(H))
    # The older rule, through the config: the pole's blocks are invalid, the wall fills in.
    old = LatentMemory(channels=2, depth_min_near_fraction=1.0)
    stats = old.write(lat, depth, K16, eye(), 0.0)
    assert stats.rejected_depth == H and stats.rejected_edge == 0
    assert not bool((old.read(eye(), K16, (H, W)).depth[0] == 1.0).any())

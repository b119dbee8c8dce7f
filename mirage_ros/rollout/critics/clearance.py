"""``clearance``: imagined depth inside the robot's swept corridor, against the robot radius.

Every imagined step's depth map (the memory's depth where it filled a cell, the depth head's
elsewhere) is lifted to map-frame points. Points between ``min_height`` and ``max_height``
above the path's base are obstacles; the path's clearance is the distance (in the ground plane)
from its resampled polyline to its ``min_points``-th nearest obstacle point, so that one noisy
cell does not decide. Cost: ``collision_cost`` when the clearance is below the robot radius
(a predicted collision costs most), rising linearly from 0 to 1 as the clearance falls from
``radius + margin`` to the radius, 0 beyond.
"""

from __future__ import annotations

import torch

from mirage_ros.rollout.critics.base import Critic, CriticBatch, register

# Elements of the [paths, points, segments, 2] distance tensor computed at once: paths are taken
# in chunks sized so that long horizons (points and segments both grow with T) stay bounded.
_CHUNK_ELEMENTS = 8_000_000


@register
class ClearanceCritic(Critic):
    name = "clearance"
    description = "predicted collision (collision_cost) or lack of clearance (0..1) along the path"
    default_weight = 2.0
    needs_imagination = True
    parameters = {
        "margin": (0.3, "metres beyond the robot radius where the cost starts to rise"),
        "collision_cost": (10.0, "cost of a path whose clearance is below the robot radius"),
        "min_height": (0.1, "metres above the base; lower points are floor"),
        "max_height": (1.2, "metres above the base; higher points cannot hit the robot"),
        "max_range": (5.0, "metres; farther depth is ignored"),
        "min_points": (3, "obstacle cells that must lie within a distance before it counts"),
    }

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if not self.margin > 0 or not self.max_range > 0 or self.min_points < 1:
            raise ValueError("critic clearance: margin and max_range must be > 0, min_points "
                             ">= 1")
        if not self.min_height < self.max_height:
            raise ValueError(f"critic clearance: min_height {self.min_height} must be below "
                             f"max_height {self.max_height}")

    def cost(self, batch: CriticBatch) -> torch.Tensor:
        if batch.depth is None:
            return torch.zeros(batch.n_paths, dtype=torch.float64)
        clear = self.clearance(batch)
        r = float(batch.robot_radius)
        ramp = ((r + self.margin - clear) / max(self.margin, 1e-6)).clamp(0.0, 1.0)
        return torch.where(clear < r, torch.full_like(clear, self.collision_cost), ramp)

    def clearance(self, batch: CriticBatch) -> torch.Tensor:
        """Predicted clearance per path, metres (inf when nothing is in range), float64 [N]."""
        depth = batch.depth.double()  # [N,T,h,w]
        n, t, h, w = depth.shape
        K = batch.K_latent.to(depth)
        v, u = torch.meshgrid(torch.arange(h, dtype=depth.dtype, device=depth.device) + 0.5,
                              torch.arange(w, dtype=depth.dtype, device=depth.device) + 0.5,
                              indexing="ij")
        y = (v - K[1, 2]) / K[1, 1]
        x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
        rays = torch.stack([x, y, torch.ones_like(x)], -1)  # [h,w,3] at depth 1
        cams = batch.cam_to_map[:, 1:].to(depth)  # [N,T,4,4]
        pts = rays * depth[..., None]  # optical frame [N,T,h,w,3]
        pts = torch.einsum("ntij,nthwj->nthwi", cams[..., :3, :3], pts) \
            + cams[..., None, None, :3, 3]
        base = batch.base_to_map.to(depth)
        height = pts[..., 2] - base[:, 0, 2, 3][:, None, None, None]
        obstacle = (depth > 0) & (depth < self.max_range) \
            & (height > self.min_height) & (height < self.max_height)
        xy = pts[..., :2].reshape(n, -1, 2)
        obstacle = obstacle.reshape(n, -1)
        track = base[:, :, :2, 3]  # [N,T+1,2]
        out = torch.empty(n, dtype=torch.float64, device=depth.device)
        k = max(1, min(self.min_points, xy.shape[1]))
        chunk = max(1, _CHUNK_ELEMENTS // (xy.shape[1] * t * 2))
        for s in range(0, n, chunk):
            d = _distance_to_polyline(xy[s:s + chunk], track[s:s + chunk])
            d = torch.where(obstacle[s:s + chunk], d, torch.full_like(d, float("inf")))
            out[s:s + chunk] = d.kthvalue(k, dim=1).values
        return out.cpu()


def _distance_to_polyline(points: torch.Tensor, track: torch.Tensor) -> torch.Tensor:
    """Distance of points ``[n,M,2]`` to each path's polyline ``[n,S+1,2]``: ``[n,M]``."""
    a, b = track[:, :-1], track[:, 1:]  # [n,S,2]
    ab = b - a
    length2 = (ab * ab).sum(-1).clamp_min(1e-12)  # a zero-length segment is its point
    ap = points[:, :, None] - a[:, None]  # [n,M,S,2]
    f = ((ap * ab[:, None]).sum(-1) / length2[:, None]).clamp(0.0, 1.0)
    nearest = a[:, None] + f[..., None] * ab[:, None]
    return (points[:, :, None] - nearest).norm(dim=-1).min(-1).values

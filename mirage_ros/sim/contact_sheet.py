"""A contact sheet of random frames from several scenes, to see what the simulator renders:
``python -m mirage_ros.sim.contact_sheet --out out/contact_sheet.png``.

One row per scene seed: ``--frames`` RGB frames picked at random along a tour, then the depth of
the last of them (turbo colour map, near = red, far = blue, black = no depth).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from mirage_ros.geometry import CameraRig
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.scene import procedural_scene
from mirage_ros.sim.tour import tour
from mirage_ros.sim.truth import render_path

__all__ = ["contact_sheet", "main"]


def _depth_colours(depth: NDArray, max_depth: float) -> NDArray:
    scaled = np.clip(depth / max_depth, 0.0, 1.0)
    bgr = cv2.applyColorMap((255 * (1.0 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)
    bgr[depth <= 0] = 0
    return bgr[:, :, ::-1]


def contact_sheet(
    seeds: Sequence[int], frames: int = 6, rig: CameraRig | None = None, sample_seed: int = 0,
    shadows: bool = False,
) -> NDArray:
    """RGB image ``[rows * H, (frames + 1) * W, 3]`` uint8."""
    rig = rig or CameraRig.create()
    rng = np.random.default_rng(sample_seed)
    rows = []
    for seed in seeds:
        scene = procedural_scene(seed)
        trajectory = tour(scene, 150, dt=0.2, seed=seed)
        picks = np.sort(rng.choice(len(trajectory), size=frames, replace=False))
        with Renderer(scene, rig.camera, shadows=shadows) as renderer:
            shot = render_path(renderer, rig, trajectory.base_to_map()[picks])
        tiles = list(shot.rgb) + [_depth_colours(shot.depth[-1], 8.0)]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mirage_ros.sim.contact_sheet",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/contact_sheet.png")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--frames", type=int, default=6, help="RGB frames per scene")
    parser.add_argument("--sample-seed", type=int, default=0, help="which frames are picked")
    parser.add_argument("--shadows", action="store_true")
    args = parser.parse_args(argv)
    sheet = contact_sheet(range(args.first_seed, args.first_seed + args.scenes), args.frames,
                          sample_seed=args.sample_seed, shadows=args.shadows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet[:, :, ::-1])
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

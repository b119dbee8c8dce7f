"""The region styles of procedural scenes (warehouse aisles, pillar halls, cluttered rooms),
forcing one style, and the generator's per-seed camera heights and pitches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mirage_ros.geometry import CameraRig
from mirage_ros.sim.procedural import NEW_STYLES, STYLES, generate_scene
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.scene import procedural_scene
from mirage_ros.sim.tour import tour
from mirage_ros.sim.truth import render_path
from mirage_ros.train.episodes import EpisodeReader
from mirage_ros.train.generate import GenerateConfig, camera_of_seed
from mirage_ros.train.generate import main as generate_main


@pytest.mark.parametrize("style", NEW_STYLES)
def test_new_styles_are_deterministic_and_forced(style):
    a, b = generate_scene(5, style), generate_scene(5, style)
    assert a.mjcf == b.mjcf
    assert a.mjcf != generate_scene(6, style).mjcf
    assert set(a.styles) == {style} and len(a.styles) == len(a.plan.regions)


def test_every_style_can_be_forced_and_unknown_ones_are_refused():
    for style in STYLES:
        assert set(generate_scene(3, style).styles) == {style}
    with pytest.raises(ValueError, match="unknown scene style"):
        generate_scene(3, "castle")


def test_mixed_scenes_keep_the_old_styles_and_add_new_ones():
    scenes = [generate_scene(s) for s in range(60)]
    with_new = sum(any(st in NEW_STYLES for st in s.styles) for s in scenes)
    assert 0.3 <= with_new / len(scenes) <= 0.75
    seen = {st for s in scenes for st in s.styles}
    assert set(STYLES) <= seen
    # The plan varies the wall height; open halls are bigger than any flat's room.
    heights = [s.plan.wall_height for s in scenes]
    assert min(heights) < 2.6 and max(heights) > 3.4
    assert any(r.width * r.depth > 45 for s in scenes for r in s.plan.regions)


@pytest.mark.parametrize("style", NEW_STYLES)
@pytest.mark.parametrize("seed", [0, 7, 21])
def test_new_styles_compile_stay_small_and_can_be_toured(style, seed):
    scene = procedural_scene(seed, style)
    styles = scene.styles
    assert set(styles) == {style}
    assert scene.model.ngeom < 600
    trajectory = tour(scene, 40, dt=0.5, seed=seed)
    moved = np.linalg.norm(np.diff(trajectory.states[:, :2], axis=0), axis=1).sum()
    assert moved > 3.0
    # The robot (radius 0.25 m) never touches anything.
    assert scene.obstacles().distance(trajectory.states[:, :2]).min() > 0.25


def test_thin_obstacles_are_obstacles():
    # Legs and poles of 2-6 cm reach the planner as discs; the low bottom boards of shelving and
    # short bollards lie in the robot's obstacle band too.
    thin = 0
    for seed in range(4):
        scene = procedural_scene(seed, "cluttered")
        discs = scene.obstacles().discs
        thin += int(((discs[:, 2] >= 0.0099) & (discs[:, 2] <= 0.031)).sum())
    assert thin >= 10
    scene = procedural_scene(1, "aisles")
    assert len(scene.obstacles()) > 40


def test_camera_ranges_are_respected_and_fixed_per_seed():
    fixed = GenerateConfig(out="x")
    assert camera_of_seed(fixed, 3) == (0.5, 10.0)
    config = GenerateConfig(out="x", camera_height_range=(0.25, 1.0),
                            camera_pitch_range=(-5.0, 20.0))
    drawn = [camera_of_seed(config, s) for s in range(50)]
    assert drawn == [camera_of_seed(config, s) for s in range(50)]
    heights, pitches = np.array(drawn).T
    assert heights.min() >= 0.25 and heights.max() <= 1.0 and heights.std() > 0.1
    assert pitches.min() >= -5.0 and pitches.max() <= 20.0 and pitches.std() > 3.0
    # One range leaves the other value fixed, and the height drawn does not change.
    only_height = GenerateConfig(out="x", camera_height_range=(0.25, 1.0))
    assert [camera_of_seed(only_height, s) for s in range(5)] == [
        (h, 10.0) for h, _ in drawn[:5]]


def test_generator_cli_styles_and_camera_ranges(tmp_path):
    out = tmp_path / "data"
    assert generate_main(["--out", str(out), "--scenes", "2", "--first-seed", "4",
                          "--frames-per-episode", "3", "--width", "24", "--height", "24",
                          "--style", "pillar_hall", "--camera-height-range", "0.3,0.9",
                          "--camera-pitch-range=-5,20"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["config"]["style"] == "pillar_hall"
    assert index["config"]["camera_height_range"] == [0.3, 0.9]
    reader = EpisodeReader(out)
    heights = set()
    for i, ref in enumerate(reader.refs):
        meta = ref.meta
        assert meta["style"] == "pillar_hall" and set(meta["scene_styles"]) == {"pillar_hall"}
        assert 0.3 <= meta["camera_height"] <= 0.9 and -5 <= meta["camera_pitch_deg"] <= 20
        ep = reader.load(i)
        np.testing.assert_allclose(ep.cam_to_map[:, 2, 3], meta["camera_height"])
        heights.add(meta["camera_height"])
    assert len(heights) == 2
    with pytest.raises(SystemExit):
        generate_main(["--out", str(out), "--style", "castle"])


def test_open_roofs_leave_closed_scenes_as_they_were():
    """``open_roof`` takes the ceiling off a share of the scenes; a scene that stays closed is
    the old one byte for byte (the roof draws from its own stream), and an open one differs
    only by what the roof takes away and the sky adds: same plan, same styles."""
    closed = [generate_scene(s) for s in range(40)]
    mixed = [generate_scene(s, open_roof=0.5) for s in range(40)]
    opened = [s for s in mixed if s.open_roof]
    assert 10 <= len(opened) <= 30
    for a, b in zip(closed, mixed, strict=True):
        assert not a.open_roof
        assert a.plan == b.plan and a.styles == b.styles
        assert (a.mjcf == b.mjcf) == (not b.open_roof)
    assert all(generate_scene(s.seed, open_roof=1.0).mjcf == s.mjcf for s in opened)
    for scene in opened[:6]:
        # No ceiling slab (one per region, above the walls) and no lamp fixture (one per
        # lamp): exactly those geoms are gone.
        top = scene.plan.wall_height
        shut, compiled = procedural_scene(scene.seed), procedural_scene(scene.seed, open_roof=1.0)
        assert compiled.open_roof and not shut.open_roof
        assert (shut.model.geom_pos[:, 2] > top).sum() == len(scene.plan.regions)
        assert not (compiled.model.geom_pos[:, 2] > top).any()
        gone = len(scene.plan.regions) + shut.model.nlight
        assert compiled.model.ngeom == shut.model.ngeom - gone
    texts = "".join(s.mjcf for s in opened)
    assert 'type="skybox"' in texts and 'directional="true"' in texts
    with pytest.raises(ValueError, match="open_roof"):
        generate_scene(1, open_roof=1.5)


def test_an_open_roof_shows_sky_with_no_depth():
    """Seen from inside, an open scene has sky above the walls; its depth is 0 (nothing hit),
    whether the sky is a skybox or MuJoCo's black background."""
    seeds = {"skybox": None, "black": None}
    for seed in range(60):
        scene = generate_scene(seed, open_roof=1.0)
        key = "skybox" if 'type="skybox"' in scene.mjcf else "black"
        if seeds[key] is None:
            seeds[key] = seed
    for seed in seeds.values():
        scene = procedural_scene(seed, open_roof=1.0)
        trajectory = tour(scene, 30, dt=0.5, seed=seed)
        rig = CameraRig.create(64, 64, 90.0, 0.5, -20.0)  # looking up a little
        with Renderer(scene, rig.camera) as renderer:
            frames = render_path(renderer, rig, trajectory.base_to_map())
        sky = frames.depth == 0
        assert sky[:, :8].mean() > 0.2  # the top rows see the sky in a good share of frames
        assert not sky[:, -8:].any()  # the floor is always hit
        assert frames.depth.max() < 30.0


def test_generator_cli_records_open_roofs(tmp_path):
    out = tmp_path / "data"
    assert generate_main(["--out", str(out), "--scenes", "4", "--frames-per-episode", "2",
                          "--width", "24", "--height", "24", "--open-roof", "0.5"]) == 0
    reader = EpisodeReader(out)
    flags = {ref.meta["scene_seed"]: ref.meta["open_roof"] for ref in reader.refs}
    assert flags == {s: generate_scene(s, open_roof=0.5).open_roof for s in range(4)}
    with pytest.raises(SystemExit):
        generate_main(["--out", str(out), "--open-roof", "2"])

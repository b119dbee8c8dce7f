"""Does imagination make a robot plan better? Closed-loop navigation in the simulator.

    python -m mirage_ros.bench.navigation [--episodes N]
        [--planners geometry,memory,imagination,oracle] [--goals pose,image-seen,image-unseen]
        [--scenes procedural:7,...,pillar_corridor,...]
        [--mjcf FILE [--start x,y,yaw]] [--device cpu] [--workers K] [--out DIR]
        [--seeds 0,1,2,3] [--noise-scale S] [--offline-cases K]
    python -m mirage_ros.bench.navigation --report DIR/results.json

An episode: the robot drives a short look-around tour of a scene (``--tour-frames`` frames, 0.5 s
apart; every frame goes into its memory), then gets a goal and drives to it. Every second of
simulated time (the demo planner's replan_period) it scores a fan of candidate arcs from its pose
(the demo planner's fan and rules, ``rollout.local_planner``) with the engine and follows the
best one. The episode
ends when the robot is within the goal radius (0.3 m for a goal pose, 0.5 m for a goal image's
place), when it collides (the simulator refuses a step that comes closer to an obstacle than
the robot radius), or at the time limit (10 s plus three times the shortest route at full
speed). While it drives, the robot keeps observing (a frame every 0.5 s). The simulator waits
while a decision is made, so every planner gets the same simulated time whatever its speed;
decision latency is measured and reported separately.

Goals (``--goals``, cycled over episodes): ``pose`` (the planner gets the goal's position), or an
image only, taken at a place ``image-seen`` earlier in the tour (the very frame) or at a spot
``image-unseen`` that no tour frame had in view. Goals are 2-5 m of free route from the start,
along a route at most 1.3 times the straight line (the greedy planner has no global plan: a goal
behind a wall is beyond it whatever the critics say; ``make demo``'s notes show that).

Planners, on identical episodes (scene, tour, start, goal):

* ``geometry``: path length, turning and distance of the path's end to the goal; no vision.
  With an image goal it has nothing to go on.
* ``memory``: the node's critics (goal_pose, goal_image, clearance, path_length, path_turning)
  on the memory's read along each path with its holes filled by the nearest filled cell; no
  diffusion (``EngineConfig(imagination="memory")``).
* ``imagination``: the same critics on the world model's imagination (the product).
* ``oracle``: the same critics on the simulator's true frames along each path (rendered, depth
  reduced to cells like the memory's, final views encoded): the ceiling of these critics.

Per decision, from the same episodes: Spearman's rho between the clearance critic's predicted
clearance of each candidate and the true clearance from the scene geometry along the same track
(each path as the critics saw it: resampled to the horizon, the robot's own position left out);
whether the chosen candidate's true path collides; for image goals, the rank given to the
candidate whose track ends nearest the goal. Every collision is put down to what it hit: a low
obstacle (below the clearance critic's min_height), a thin one (smaller than a memory cell at
1 m) or another. ``--offline-cases`` adds Navigation World Models' offline protocol (see
``offline_protocol``). The output ends with one line per planner:
``<planner>: success <s>/<n>, collisions <c>/<n>, SPL <spl>``.

Seeds. The imagination is a sample, and a closed loop amplifies it: one different imagined
frame changes a decision, and the episode goes elsewhere. With the same weights, success on
the 72 episodes below ranged over 37-49 across four noise seeds (BENCHMARKS.md), more than any
difference between two models measured on one seed. ``--seeds`` runs every episode once per
seed (results per seed in ``DIR/seed-<s>/``) and ends with the spread over seeds per planner
(``DIR/seeds.json``): compare models on that, not on one draw.

Scenes: held-out procedural seeds (``train.episodes.split_of_seed`` gives 'test') and the
hand-built MJCF scenes in ``mirage_ros/bench/scenes`` that no training script reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mirage_ros.bench.ranking import spearman
from mirage_ros.geometry import (
    CameraRig,
    cell_index,
    invert,
    planar_pose,
    project,
    transform_points,
    yaw_from_quat_xyzw,
)
from mirage_ros.memory import LatentMemory, reduce_depth
from mirage_ros.model import WorldModel
from mirage_ros.rollout import make_critic
from mirage_ros.rollout.critics import Goal
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine
from mirage_ros.rollout.imagination import Imagined
from mirage_ros.rollout.local_planner import (
    candidate_fan,
    predicted_collision,
    reached,
    stuck,
)
from mirage_ros.rollout.paths import CandidatePath, arc

PLANNERS = ("geometry", "memory", "imagination", "oracle")
GOAL_KINDS = ("pose", "image-seen", "image-unseen")
HAND_BUILT = ("pillar_corridor", "cluttered_room", "narrow_aisles")
# Held out: train.episodes.split_of_seed(s) == "test" for each (a test checks it).
PROCEDURAL_SEEDS = (7, 11, 20, 32, 42, 43)
SCENE_DIR = Path(__file__).resolve().parent / "scenes"

# The node's default critics and weights (config/mirage.yaml); exploration has weight 0 there.
VISION_CRITICS = (("goal_pose", 1.0), ("goal_image", 1.0), ("clearance", 2.0),
                  ("path_length", 0.1), ("path_turning", 0.1))
GEOMETRY_CRITICS = (("goal_pose", 1.0), ("path_length", 0.1), ("path_turning", 0.1))

ROBOT_RADIUS = 0.25
CONTROL_DT = 0.05  # s, simulation step
OBSERVE_PERIOD = 0.5  # s between frames written to the memory while driving
TOUR_DT = 0.5
POSE_TOLERANCE = 0.3  # m: the demo planner's goal_tolerance
IMAGE_TOLERANCE = 0.5  # m: a goal image names a place, not a pose
GOAL_ROUTE = (2.0, 5.0)  # m of free route from the start
MAX_DETOUR = 1.3  # route / straight line
CLEARANCE_CAP = 5.0  # m: the clearance critic's max_range; farther ties
# The demo planner's defaults (config/demo_planner.yaml), and the node's default horizon.
FAN = dict(num_paths=9, length=1.5, poses=9, max_curvature=1.2, frame_id="map")
HORIZON = 8
REPLAN = 1.0  # s of simulated time between decisions (the demo planner's replan_period)


# ----------------------------------------------------------------------------- scenes


def scene_names(spec: str | None, mjcf: str | None) -> list[str]:
    """The scene list: ``--mjcf`` alone, else ``--scenes`` (default: held-out procedural seeds
    and the hand-built scenes), interleaved so that a short run sees both kinds."""
    if mjcf:
        return [str(Path(mjcf).resolve())]
    if spec:
        return [s.strip() for s in spec.split(",") if s.strip()]
    procedural = [f"procedural:{s}" for s in PROCEDURAL_SEEDS]
    out: list[str] = []
    for i in range(max(len(procedural), len(HAND_BUILT))):
        out += procedural[i:i + 1] + list(HAND_BUILT[i:i + 1])
    return out


_SCENES: dict[str, object] = {}


def load(name: str):
    """A scene by name: ``procedural:SEED``, a hand-built scene's name, or an MJCF path
    (cached per process: compiling and rasterising takes a second)."""
    from mirage_ros.sim.scene import load_scene, procedural_scene

    if name not in _SCENES:
        if name.startswith("procedural:"):
            _SCENES[name] = procedural_scene(int(name.split(":", 1)[1]))
        elif name in HAND_BUILT:
            _SCENES[name] = load_scene(SCENE_DIR / f"{name}.xml")
        else:
            path = Path(name)
            if not path.is_file():
                raise ValueError(f"scene {name!r}: not procedural:SEED, not one of "
                                 f"{', '.join(HAND_BUILT)}, and no such MJCF file")
            _SCENES[name] = load_scene(path)
    return _SCENES[name]


def _short(name: str) -> str:
    return Path(name).stem if name.endswith(".xml") else name


def scene_style(name: str) -> str:
    return "procedural" if name.startswith("procedural:") else "hand-built"


# ----------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class Episode:
    """One navigation task, identical for every planner."""

    index: int
    scene: str
    tour_seed: int
    tour_states: np.ndarray  # [F,3] x, y, yaw every TOUR_DT: what the robot saw first
    goal_kind: str
    goal: tuple[float, float, float]  # x, y, yaw (yaw: where a goal image looks)
    shortest: float  # m, free route from the start to the goal
    time_limit: float  # s

    @property
    def start(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.tour_states[-1])

    @property
    def tolerance(self) -> float:
        return POSE_TOLERANCE if self.goal_kind == "pose" else IMAGE_TOLERANCE

    def describe(self) -> dict:
        return {"index": self.index, "scene": _short(self.scene), "scene_id": self.scene,
                "style": scene_style(self.scene), "goal_kind": self.goal_kind,
                "start": [round(v, 3) for v in self.start],
                "goal": [round(v, 3) for v in self.goal], "shortest": round(self.shortest, 3),
                "time_limit": round(self.time_limit, 1), "tour_seed": self.tour_seed,
                "tour_states": self.tour_states.round(4).tolist()}

    @classmethod
    def from_record(cls, d: dict) -> Episode:
        """The episode ``describe()`` wrote (tour poses rounded to 0.1 mm)."""
        return cls(d["index"], d["scene_id"], d["tour_seed"], np.asarray(d["tour_states"]),
                   d["goal_kind"], tuple(d["goal"]), d["shortest"], d["time_limit"])


def _route_grid(scene):
    """The grid routes are measured on: the tour pilot's (10 cm cells keeping the smallest
    clearance of the 5 cm raster they cover)."""
    return scene.clearance_grid(resolution=0.05).coarsen(2)


def _visible_from(points: np.ndarray, cams: np.ndarray, depths: np.ndarray, K: np.ndarray,
                  max_range: float = 5.0) -> np.ndarray:
    """Whether each map point ``[P,3]`` is in view, unoccluded, within ``max_range`` in any of
    the frames (camera poses ``[F,4,4]``, true depth ``[F,H,W]``): ``[P]`` bool."""
    seen = np.zeros(len(points), dtype=bool)
    h, w = depths.shape[1:]
    for T, depth in zip(cams, depths, strict=True):
        p = transform_points(invert(T), points)
        z = p[:, 2]
        uv = project(K, p)  # NaN behind the camera
        with np.errstate(invalid="ignore"):
            ok = (z > 0.1) & (z < max_range) & (uv[:, 0] >= 0) & (uv[:, 0] < w) \
                & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        idx = np.flatnonzero(ok)
        if len(idx):
            u, v = cell_index(uv[idx]).T
            d = depth[v, u]
            seen[idx[(d == 0) | (d >= z[idx] - 0.15)]] = True
    return seen


def make_episode(index: int, scene_name: str, kind: str, tour_frames: int,
                 start: Sequence[float] | None = None) -> Episode | None:
    """The episode ``index`` in ``scene_name`` with a goal of ``kind``; None when the scene has
    no goal of that kind for this tour (the caller tries the next tour seed)."""
    from mirage_ros.sim.planning import cost_to_go
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.tour import tour

    scene = load(scene_name)
    tour_seed = 1000 * index + 17
    for attempt in range(6):
        seed = tour_seed + attempt
        traj = tour(scene, tour_frames, dt=TOUR_DT, seed=seed, robot_radius=ROBOT_RADIUS,
                    start=start)
        episode = _goal_for(index, scene_name, scene, traj, seed, kind, cost_to_go, Renderer)
        if episode is not None:
            return episode
        if start is not None:
            break
    return None


def _goal_for(index, scene_name, scene, traj, seed, kind, cost_to_go, Renderer) -> Episode | None:
    rng = np.random.default_rng(seed)
    grid = _route_grid(scene)
    sx, sy, _ = (float(v) for v in traj.states[-1])
    # Free route length from the start to every cell (the field is symmetric).
    field_ = cost_to_go(grid, (sx, sy), ROBOT_RADIUS + 0.05, comfort_weight=0.0)
    rig = CameraRig.create()

    def route_ok(xy: np.ndarray) -> np.ndarray:
        cells = grid.cell_of(xy)
        rows, cols = grid.shape
        inside = ((cells[:, 0] >= 0) & (cells[:, 0] < rows)
                  & (cells[:, 1] >= 0) & (cells[:, 1] < cols))
        d = np.full(len(xy), np.inf)
        d[inside] = field_[cells[inside, 0], cells[inside, 1]]
        straight = np.maximum(np.linalg.norm(xy - np.array([sx, sy]), axis=1), 1e-6)
        ok = (d >= GOAL_ROUTE[0]) & (d <= GOAL_ROUTE[1]) & (d <= MAX_DETOUR * straight)
        return d, ok

    if kind == "image-seen":
        # A place the robot stood earlier in the tour (not the last second of it), looking the
        # way it looked then: the goal image is exactly a frame it saw.
        states = traj.states[:-4]
        d, ok = route_ok(states[:, :2])
        options = np.flatnonzero(ok)
        if not len(options):
            return None
        i = int(options[rng.integers(len(options))])
        gx, gy, gyaw = (float(v) for v in states[i])
        shortest = float(d[i])
    else:
        clear = grid.clearance >= ROBOT_RADIUS + 0.3
        cells = np.argwhere(clear & np.isfinite(field_))
        if not len(cells):
            return None
        xy = grid.center_of(cells)
        d, ok = route_ok(xy)
        if kind == "image-unseen":
            with Renderer(scene, rig.camera) as renderer:
                cams = rig.cam_to_map(traj.base_to_map())
                depths = np.stack([renderer.render(T)[1] for T in cams])
            spots = np.concatenate([xy, np.full((len(xy), 1), 0.3)], axis=1)
            ok &= ~_visible_from(spots, cams, depths, rig.camera.K)
        options = np.flatnonzero(ok)
        if not len(options):
            return None
        i = int(options[rng.integers(len(options))])
        gx, gy = (float(v) for v in xy[i])
        gyaw = math.atan2(gy - sy, gx - sx)  # the view on arrival from the start's side
        shortest = float(d[i])
    shortest = min(shortest, _taut_route(scene, grid, (sx, sy), (gx, gy), cost_to_go))
    limit = 10.0 + 3.0 * shortest / 0.5
    return Episode(index, scene_name, seed, traj.states.copy(), kind, (gx, gy, gyaw), shortest,
                   limit)


def _taut_route(scene, grid, start, goal, cost_to_go) -> float:
    """Length (m) of the shortest route from ``start`` to ``goal`` for a robot of
    ``ROBOT_RADIUS``: the grid route, pulled taut wherever a straight segment keeps the radius
    (the 8-connected grid alone overstates straight runs at odd angles by up to 8%)."""
    from mirage_ros.sim.planning import route

    points = route(grid, start, cost_to_go(grid, goal, ROBOT_RADIUS + 0.05, comfort_weight=0.0))
    if points is None:
        return math.inf
    points = np.concatenate([points, np.asarray(goal, dtype=np.float64)[None]])
    obstacles = scene.obstacles()

    def clear(a: np.ndarray, b: np.ndarray) -> bool:
        n = max(2, int(math.ceil(np.linalg.norm(b - a) / 0.03)) + 1)
        return bool(obstacles.distance(np.linspace(a, b, n)).min() >= ROBOT_RADIUS)

    length, i = 0.0, 0
    while i < len(points) - 1:
        j = len(points) - 1
        while j > i + 1 and not clear(points[i], points[j]):
            j -= 1
        length += float(np.linalg.norm(points[j] - points[i]))
        i = j
    return length


def plan_episodes(n: int, scenes: Sequence[str], kinds: Sequence[str], tour_frames: int,
                  start: Sequence[float] | None = None) -> list[Episode]:
    """``n`` episodes: scene ``j = i % len(scenes)``, visited for the ``v = i // len(scenes)``-th
    time, gets goal kind ``(j + v) % len(kinds)``."""
    episodes = []
    for i in range(n):
        scene = scenes[i % len(scenes)]
        # Visit v of scene j gets kind (j + v): every scene meets every kind, whatever the
        # numbers of scenes and kinds.
        kind = kinds[(i % len(scenes) + i // len(scenes)) % len(kinds)]
        episode = make_episode(i, scene, kind, tour_frames, start)
        if episode is None:
            raise RuntimeError(f"episode {i}: scene {_short(scene)} has no {kind} goal "
                               f"{GOAL_ROUTE[0]:g}-{GOAL_ROUTE[1]:g} m of route from the tour's "
                               "end (tried 6 tours)")
        episodes.append(episode)
    return episodes


# ----------------------------------------------------------------------------- planners


def make_engine(planner: str, model: WorldModel, rig: CameraRig,
                critic_params: dict[str, dict] | None = None,
                engine_options: dict | None = None) -> RolloutEngine:
    """The engine of ``planner``; ``critic_params`` maps a critic name to parameters that
    replace its defaults (``--critic-param``), for the planners that run that critic;
    ``engine_options``, ``EngineConfig`` fields that replace theirs (``--noise-scale``)."""
    critics = GEOMETRY_CRITICS if planner == "geometry" else VISION_CRITICS
    params = critic_params or {}
    mode = "memory" if planner == "memory" else "diffusion"
    device = next(model.parameters()).device
    return RolloutEngine(model, LatentMemory(channels=model.latent_channels, device=device),
                         rig.cam_to_base,
                         [(make_critic(n, params.get(n)), w) for n, w in critics],
                         EngineConfig(imagination=mode, robot_radius=ROBOT_RADIUS,
                                      **(engine_options or {})))


@torch.no_grad()
def oracle_views(engine: RolloutEngine, renderer, paths, horizon: int) -> Imagined:
    """The simulator's true frames at the camera poses the engine would imagine: depth reduced
    to cells by the memory's own rule, and the autoencoder's latents of the final views.

    Only the final views are encoded: of the critics the planners run, only ``goal_image``
    reads latents, and only the last step's (encoding every view was 90% of an oracle
    decision on the CPU). The other steps' latents are NaN, so a critic that read them would
    make ``score_paths`` fail loudly rather than score on made-up views."""
    last = engine.last_view
    _, cams = engine.camera_poses(paths, horizon, last.cam_to_map)
    poses = cams[:, 1:].cpu().numpy().reshape(-1, 4, 4)
    frames = [renderer.render(T) for T in poses]
    rgb = torch.from_numpy(np.stack([f[0] for f in frames]))
    depth = torch.from_numpy(np.stack([f[1] for f in frames]))
    h, w = engine.latent_hw
    n = len(paths)
    final = rgb.view(n, horizon, *rgb.shape[1:])[:, -1]
    encoded = engine.model.encode(final.to(engine.device))
    latents = torch.full((n, horizon, *encoded.shape[1:]), float("nan"), device=engine.device)
    latents[:, -1] = encoded
    cells = reduce_depth(depth, h, w).to(engine.device)
    return Imagined(latents=latents,
                    depth=cells.view(n, horizon, h, w),
                    memory_depth=torch.zeros_like(cells).view(n, horizon, h, w),
                    mask=torch.zeros(n, horizon, h, w, dtype=torch.bool, device=engine.device),
                    coverage=torch.ones(n, horizon, device=engine.device))


# ----------------------------------------------------------------------------- one episode


@dataclass
class Result:
    episode: int
    planner: str
    outcome: str = "timeout"  # success | collision | timeout
    seconds: float = 0.0  # simulated
    driven: float = 0.0  # metres
    spl: float = 0.0
    final_distance: float = math.inf
    latencies: list[float] = field(default_factory=list)  # s per decision
    rhos: list[float] = field(default_factory=list)  # clearance critic, per decision
    rhos_unfilled: list[float] = field(default_factory=list)  # memory planner: holes unknown
    chosen_collides: int = 0  # decisions whose chosen candidate truly collides
    image_ranks: list[int] = field(default_factory=list)  # 1 = nearest-end candidate ranked best
    image_candidates: list[int] = field(default_factory=list)
    driven_xy: list[list[float]] = field(default_factory=list)
    hit: dict | None = None  # collision_cause() of a collision

    @property
    def decisions(self) -> int:
        return len(self.latencies)


# What a collision hit, by what a camera-based clearance critic can see of it:
# "low": its top is less than 5 cm above the clearance critic's min_height of 0.1 m, below which
#   points are floor (a lamp's base, a bottom shelf: the critic sees a sliver at most);
# "thin": its whole footprint is smaller than a memory cell at 1 m, 2 tan(45 deg) / 16 =
#   0.125 m (a pole, a leg: the depth reduction to cells drops it, see memory.depth);
# "other": walls and furniture, which the critic should see.
LOW_TOP = 0.15
THIN_SIZE = 0.125


def collision_cause(scene, xy: Sequence[float]) -> dict:
    """The obstacle nearest the robot's position ``xy`` when it collided: its MuJoCo name,
    top height, footprint size (largest extent) and kind (see ``LOW_TOP`` and ``THIN_SIZE``)."""
    import mujoco

    geom, distance, size = scene.obstacles().nearest(xy)
    top = math.nan
    name = ""
    if geom >= 0:
        model, data = scene.model, scene.data
        centre, half = model.geom_aabb[geom, :3], model.geom_aabb[geom, 3:]
        corners = centre + half * np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1)
                                            for c in (-1, 1)])
        world = corners @ data.geom_xmat[geom].reshape(3, 3).T + data.geom_xpos[geom]
        top = float(world[:, 2].max())
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, geom) or f"geom {geom}"
    kind = "low" if top < LOW_TOP else "thin" if size < THIN_SIZE else "other"
    return {"geom": name, "top": round(top, 3), "size": round(size, 3),
            "distance": round(distance, 3), "kind": kind}


def track_clearance(scene, track: np.ndarray, spacing: float = 0.05) -> np.ndarray:
    """True smallest clearance (m) along each track ``[N,T+1,2]``, leaving out its first point
    (the robot's own position, the same for every candidate), sampled every ``spacing``."""
    from mirage_ros.sim.truth import clearance

    out = np.empty(len(track))
    for i, xy in enumerate(track):
        seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        if s[-1] <= 0.0:
            out[i] = float(clearance(scene, xy[:1])[0])
            continue
        q = np.linspace(0.0, s[-1], max(2, int(math.ceil(s[-1] / spacing)) + 1))[1:]
        dense = np.stack([np.interp(q, s, xy[:, 0]), np.interp(q, s, xy[:, 1])], 1)
        out[i] = float(clearance(scene, dense).min())
    return out


def _clearance_rho(critic, batch, truth) -> float:
    predicted = critic.clearance(batch).numpy()
    return spearman(np.minimum(predicted, CLEARANCE_CAP), np.minimum(truth, CLEARANCE_CAP))


def run_episode(episode: Episode, planner: str, model: WorldModel,
                critic_params: dict[str, dict] | None = None,
                engine_options: dict | None = None) -> Result:
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.robot import SimRobot
    from mirage_ros.sim.truth import fan_truth

    scene = load(episode.scene)
    rig = CameraRig.create()
    engine = make_engine(planner, model, rig, critic_params, engine_options)
    clearance = next((c for c, _ in engine.critics if c.name == "clearance"), None)
    if engine.device.type == "cuda" and planner == "imagination":
        # Capture the CUDA graphs of both fan sizes now, not inside a timed decision.
        turning = len(candidate_fan((0.0, 0.0, 0.0), None, **FAN)[0])
        for n in (FAN["num_paths"], turning):
            engine.sampler().warm(n, engine.config.sampler_steps, engine.latent_hw)
    result = Result(episode.index, planner)
    goal_xy = episode.goal[:2]
    tour_end = TOUR_DT * (len(episode.tour_states) - 1)
    sees = planner != "geometry"
    with Renderer(scene, rig.camera) as renderer:

        def observe(state, stamp: float) -> None:
            base = planar_pose(*state)
            rgb, depth = renderer.render(rig.cam_to_map(base))
            engine.observe(torch.from_numpy(rgb), torch.from_numpy(depth), rig.camera.K,
                           torch.from_numpy(base), stamp)

        if sees:
            for i, state in enumerate(episode.tour_states):
                observe(state, TOUR_DT * i)
        goal_pose = torch.from_numpy(planar_pose(*episode.goal))
        if episode.goal_kind == "pose":
            goal = Goal(pose=goal_pose)
        else:
            image, _ = renderer.render(rig.cam_to_map(goal_pose.numpy()))
            goal = Goal(latent=engine.encode_image(torch.from_numpy(image)))
        robot = SimRobot(scene, robot_radius=ROBOT_RADIUS, start=episode.start)
        robot.set_mode("path")
        t, next_decision, next_observe = 0.0, 0.0, OBSERVE_PERIOD
        followed_at = None
        while True:
            s = robot.state
            pose = (s.x, s.y, s.yaw)
            result.driven_xy.append([round(s.x, 3), round(s.y, 3)])
            if reached(pose, goal_xy, episode.tolerance):
                result.outcome = "success"
                break
            if t >= episode.time_limit - 1e-9:
                result.outcome = "timeout"
                break
            if sees and t >= next_observe - 1e-9:
                # Observe first: a decision due at the same moment starts from this frame.
                next_observe += OBSERVE_PERIOD
                observe(pose, tour_end + t)
            if t >= next_decision - 1e-9:
                next_decision += REPLAN
                known_goal = goal_xy if episode.goal_kind == "pose" else None
                turn = followed_at is not None and stuck(followed_at, pose)
                t0 = time.perf_counter()
                while True:  # at most twice: see local_planner.predicted_collision
                    paths, _ = candidate_fan(pose, known_goal, turn_round=turn, **FAN)
                    views = oracle_views(engine, renderer, paths, HORIZON) \
                        if planner == "oracle" else None
                    out = engine.score(paths, HORIZON, goal, views=views)
                    table = out.table
                    if len(paths) > FAN["num_paths"] or not predicted_collision(
                            table.names, table.costs[table.best_index]):
                        break
                    turn = True
                result.latencies.append(time.perf_counter() - t0)
                best = table.best_index
                result.chosen_collides += int(fan_truth(scene, paths, ROBOT_RADIUS).collides[best])
                # The critics see each path resampled to the horizon (a long turning path is cut
                # short): rankings are measured against the truth along that same track.
                track = out.batch.base_to_map[:, :, :2, 3].cpu().numpy()
                if clearance is not None:
                    truth = track_clearance(scene, track)
                    result.rhos.append(_clearance_rho(clearance, out.batch, truth))
                    if planner == "memory":
                        im = out.imagined
                        known = torch.where(im.mask, im.memory_depth,
                                            torch.zeros_like(im.memory_depth))
                        batch = dataclasses.replace(out.batch, depth=known)
                        result.rhos_unfilled.append(_clearance_rho(clearance, batch, truth))
                if episode.goal_kind != "pose":
                    ends = track[:, -1]
                    nearest = int(np.argmin(np.linalg.norm(ends - np.array(goal_xy), axis=1)))
                    result.image_ranks.append(int(np.flatnonzero(table.order() == nearest)[0])
                                              + 1)
                    result.image_candidates.append(len(paths))
                robot.follow(paths[best].positions[:, :2])
                followed_at = pose
            step = robot.step(CONTROL_DT, t)
            t += CONTROL_DT
            moved = math.hypot(step.state.x - s.x, step.state.y - s.y)
            result.driven += moved
            if step.collided:
                result.outcome = "collision"
                result.driven_xy.append([round(robot.state.x, 3), round(robot.state.y, 3)])
                result.hit = collision_cause(scene, (robot.state.x, robot.state.y))
                break
    s = robot.state
    result.seconds = round(t, 2)
    result.final_distance = math.hypot(s.x - goal_xy[0], s.y - goal_xy[1])
    if result.outcome == "success":
        result.spl = episode.shortest / max(result.driven, episode.shortest)
    return result



# ----------------------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% interval (0 for fewer than two values)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    half = z * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
    return float(v.mean()), float(half)


def summarize(results: Sequence[Result]) -> dict:
    n = len(results)
    ok = sum(r.outcome == "success" for r in results)
    hits = sum(r.outcome == "collision" for r in results)
    spl, spl_half = mean_ci([r.spl for r in results])
    latencies = [x for r in results for x in r.latencies]
    rhos = [x for r in results for x in r.rhos if np.isfinite(x)]
    # rho is undefined where every candidate ties, in the truth or in the prediction
    undefined = sum(not np.isfinite(x) for r in results for x in r.rhos)
    unfilled = [x for r in results for x in r.rhos_unfilled if np.isfinite(x)]
    ranks = [x for r in results for x in r.image_ranks]
    decisions = sum(r.decisions for r in results)
    hit_kinds = {k: sum(1 for r in results if r.hit and r.hit["kind"] == k)
                 for k in ("low", "thin", "other")}
    return {
        "collision_kinds": hit_kinds,
        "episodes": n, "success": ok, "success_ci": wilson(ok, n),
        "collisions": hits, "collision_ci": wilson(hits, n),
        "spl": spl, "spl_ci": spl_half,
        "latency_median": float(np.median(latencies)) if latencies else float("nan"),
        "latency_mean": float(np.mean(latencies)) if latencies else float("nan"),
        # over episodes: each episode's mean decision latency, and the interval of their mean
        "latency_ci": mean_ci([float(np.mean(r.latencies)) for r in results if r.latencies])[1],
        "decisions": decisions,
        "chosen_collides": sum(r.chosen_collides for r in results),
        "rho": float(np.mean(rhos)) if rhos else float("nan"), "rho_decisions": len(rhos),
        "rho_undefined": undefined,
        "rho_unfilled": float(np.mean(unfilled)) if unfilled else float("nan"),
        "image_rank_mean": float(np.mean(ranks)) if ranks else float("nan"),
        "image_rank_top1": float(np.mean([x == 1 for x in ranks])) if ranks else float("nan"),
    }


def summary_line(planner: str, s: dict) -> str:
    return (f"{planner}: success {s['success']}/{s['episodes']}, collisions "
            f"{s['collisions']}/{s['episodes']}, SPL {s['spl']:.3f}")


def detail_line(planner: str, s: dict) -> str:
    lo, hi = s["success_ci"]
    clo, chi = s["collision_ci"]
    parts = [f"{planner:>11}: success {s['success']}/{s['episodes']} "
             f"[{lo:.2f}, {hi:.2f}], collisions {s['collisions']}/{s['episodes']} "
             f"[{clo:.2f}, {chi:.2f}], SPL {s['spl']:.3f} +- {s['spl_ci']:.3f}, decision "
             f"latency median {1e3 * s['latency_median']:.0f} ms (mean "
             f"{1e3 * s['latency_mean']:.0f} +- {1e3 * s['latency_ci']:.0f}), "
             f"{s['decisions']} decisions, chosen path truly "
             f"collides in {s['chosen_collides']}"]
    if s["collisions"]:
        k = s["collision_kinds"]
        parts.append(f" (hit {k['low']} low, {k['thin']} thin, {k['other']} other obstacles)")
    if s["rho_decisions"]:
        parts.append(f", clearance rho {s['rho']:.2f} over {s['rho_decisions']} decisions "
                     f"({s['rho_undefined']} all-tied left out)")
        if np.isfinite(s["rho_unfilled"]):
            parts.append(f" (holes left unknown: {s['rho_unfilled']:.2f})")
    if np.isfinite(s["image_rank_mean"]):
        parts.append(f", image goals: nearest-end candidate ranked {s['image_rank_mean']:.1f} "
                     f"on average, first in {100 * s['image_rank_top1']:.0f}%")
    return "".join(parts)


# ----------------------------------------------------------------------------- pictures


def _scene_points(scene) -> np.ndarray:
    """Obstacle and floor cells of a scene as map points for ``figures.top_down_map``:
    obstacles at 0.5 m (coloured by height), free floor at 0 (light grey)."""
    grid = scene.clearance_grid(resolution=0.05)
    rows, cols = np.indices(grid.shape)
    xy = grid.center_of(np.stack([rows.ravel(), cols.ravel()], 1))
    z = np.where(grid.clearance.ravel() < 0.03, 0.5, 0.0)
    return np.concatenate([xy, z[:, None]], 1)


_OUTCOME_COLORS = {"success": (34, 185, 58), "collision": (215, 38, 38),
                   "timeout": (242, 150, 22)}


def episode_panel(episode: Episode, result: Result, size: int = 400) -> np.ndarray:
    """One episode from above: obstacles (blue), floor (grey), the tour (thin white), the drive
    (green: arrived, red: collided, orange: out of time) from its start (dot) to where it ended
    (robot arrow), and the goal (star)."""
    import cv2

    from mirage_ros.rollout.figures import auto_extent, top_down_map

    scene = load(episode.scene)
    driven = np.asarray(result.driven_xy, dtype=np.float64).reshape(-1, 2)
    extent = auto_extent(episode.tour_states[:, :2], driven, np.array([episode.goal[:2]]),
                         margin=1.0)
    span = max(extent[1] - extent[0], extent[3] - extent[2])
    title = (f"#{episode.index} {_short(episode.scene)}, {episode.goal_kind}: "
             f"{result.outcome} {result.seconds:.0f} s")
    img, view = top_down_map(_scene_points(scene), goal=episode.goal[:2], extent=extent,
                             resolution=span / size, max_size=size, voxel_size=0.05,
                             title=title, return_view=True, counts=False)

    def line(xy: np.ndarray, color, thickness: int) -> None:
        pts = np.round((view.continuous(xy) - 0.5) * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, (0, 0, 0), thickness + 2, cv2.LINE_AA, shift=4)
        cv2.polylines(img, [pts], False, color, thickness, cv2.LINE_AA, shift=4)

    line(episode.tour_states[:, :2], (255, 255, 255), 1)
    if len(driven):
        line(driven, _OUTCOME_COLORS.get(result.outcome, (128, 128, 128)), 3)
        start = np.round(view.continuous(driven[0]) - 0.5).astype(int)
        cv2.circle(img, tuple(int(v) for v in start), 5, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(img, tuple(int(v) for v in start), 4, (40, 110, 255), -1, cv2.LINE_AA)
        end = np.round(view.continuous(driven[-1]) - 0.5).astype(int)
        cv2.drawMarker(img, tuple(int(v) for v in end), (0, 0, 0), cv2.MARKER_TILTED_CROSS,
                       14, 3, cv2.LINE_AA)
    return img


def planner_figure(episodes: Sequence[Episode], results: Sequence[Result], planner: str,
                   indices: Sequence[int]) -> np.ndarray:
    panels = []
    by_index = {r.episode: r for r in results if r.planner == planner}
    for i in indices:
        panels.append(episode_panel(episodes[i], by_index[i]))
    height = max(p.shape[0] for p in panels)
    width = max(p.shape[1] for p in panels)
    tiles = [np.pad(p, ((0, height - p.shape[0]), (0, width - p.shape[1]), (0, 0)),
                    constant_values=255) for p in panels]
    while len(tiles) % 3:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + 3], 1) for i in range(0, len(tiles), 3)]
    return np.concatenate(rows, 0)


def figure_episodes(episodes: Sequence[Episode], results: Sequence[Result],
                    k: int = 6) -> list[int]:
    """Up to ``k`` episodes to draw for every planner: first those where the planners'
    outcomes differ (the interesting ones), then successes and failures alike."""
    outcomes: dict[int, set[str]] = {}
    for r in results:
        outcomes.setdefault(r.episode, set()).add(r.outcome)
    differ = [e.index for e in episodes if len(outcomes.get(e.index, ())) > 1]
    rest = [e.index for e in episodes if e.index not in differ]
    return sorted((differ + rest)[:k])


# ----------------------------------------------------------------------------- NWM's protocol

# Candidate trajectories of the offline protocol: arcs of these lengths and curvatures, and
# turns on the spot by these angles (a tour looks around on the spot now and then).
OFFLINE_LENGTHS = (0.25, 0.5, 1.0, 1.5, 2.0)
OFFLINE_CURVATURES = tuple(np.linspace(-1.2, 1.2, 9))
OFFLINE_SPINS = (-2.4, -1.6, -0.8, 0.8, 1.6, 2.4)
OFFLINE_TOUR = 48  # frames of each held-out tour


def _trajectory(start: Sequence[float], length: float, curvature: float, spin: float,
                k: int) -> CandidatePath:
    """``k + 1`` poses at equal progress along an arc of ``length`` and ``curvature`` from the
    pose ``start`` (x, y, yaw), or, for a length of 0, a turn on the spot by ``spin``."""
    x, y, yaw = (float(v) for v in start)
    if length > 0.0:
        return arc(curvature, length=length, poses=k + 1, start_xy=(x, y), start_yaw=yaw)
    yaws = yaw + spin * np.linspace(0.0, 1.0, k + 1)
    quats = np.stack([np.zeros_like(yaws), np.zeros_like(yaws), np.sin(yaws / 2),
                      np.cos(yaws / 2)], 1)
    return CandidatePath("map", np.tile([x, y, 0.0], (k + 1, 1)), quats, np.zeros(k + 1))


def _planar(path: CandidatePath) -> np.ndarray:
    """``[K, 3]`` (x, y, yaw) of a path's poses."""
    yaws = [yaw_from_quat_xyzw(q) for q in path.quaternions_xyzw]
    return np.concatenate([path.positions[:, :2], np.asarray(yaws)[:, None]], 1)


def trajectory_errors(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """ATE (mean position error, m) and RPE (mean translation error of the relative motion
    between consecutive poses, each in its own previous pose's frame, m) of ``[k+1, 3]``
    (x, y, yaw) poses against the truth's, pose for pose."""
    ate = float(np.linalg.norm(predicted[1:, :2] - truth[1:, :2], axis=1).mean())
    a, b = planar_pose(*predicted.T), planar_pose(*truth.T)
    errors = []
    for i in range(1, len(truth)):
        da = np.linalg.inv(a[i - 1]) @ a[i]
        db = np.linalg.inv(b[i - 1]) @ b[i]
        errors.append(float(np.linalg.norm((np.linalg.inv(db) @ da)[:2, 3])))
    return ate, float(np.mean(errors))


def offline_protocol(cases: int, scenes: Sequence[str], model: WorldModel, log=print) -> dict:
    """Navigation World Models' offline ranking on held-out tours: from the frame at ``t`` and
    a goal image ``k`` = 4-8 frames (2-4 s) later, pick the best of the candidate trajectories
    by the ``goal_image`` critic and compare it with the true trajectory (ATE, RPE), beside
    driving straight on at the tour's mean speed so far and the candidate nearest the truth."""
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.tour import tour

    rig = CameraRig.create()
    device = next(model.parameters()).device
    rows: dict[str, list[tuple[float, float]]] = {}
    seconds: dict[str, list[float]] = {}
    for c in range(cases):
        name = scenes[c % len(scenes)]
        scene = load(name)
        rng = np.random.default_rng(9000 + c)
        traj = tour(scene, OFFLINE_TOUR, dt=TOUR_DT, seed=9000 + c, robot_radius=ROBOT_RADIUS)
        k = int(rng.integers(4, 9))
        t = int(rng.integers(16, OFFLINE_TOUR - k))
        truth = traj.states[t:t + k + 1]
        engine = RolloutEngine(model, LatentMemory(channels=model.latent_channels, device=device),
                               rig.cam_to_base, [(make_critic("goal_image"), 1.0)],
                               EngineConfig(robot_radius=ROBOT_RADIUS))
        with Renderer(scene, rig.camera) as renderer:
            for i in range(t + 1):
                base = planar_pose(*traj.states[i])
                rgb, depth = renderer.render(rig.cam_to_map(base))
                engine.observe(torch.from_numpy(rgb), torch.from_numpy(depth), rig.camera.K,
                               torch.from_numpy(base), TOUR_DT * i)
            goal_rgb, _ = renderer.render(rig.cam_to_map(planar_pose(*traj.states[t + k])))
            goal = Goal(latent=engine.encode_image(torch.from_numpy(goal_rgb)))
            start = truth[0]
            paths = [_trajectory(start, L, kappa, 0.0, k) for L in OFFLINE_LENGTHS
                     for kappa in OFFLINE_CURVATURES]
            paths += [_trajectory(start, 0.0, 0.0, a, k) for a in OFFLINE_SPINS]
            options = [_planar(path) for path in paths]
            horizon = 11  # covers the longest, tightest arc at the engine's step length
            picks = {}
            for mode in ("imagination", "memory", "oracle"):
                engine.config = dataclasses.replace(
                    engine.config, imagination="memory" if mode == "memory" else "diffusion")
                t0 = time.perf_counter()
                views = oracle_views(engine, renderer, paths, horizon) if mode == "oracle" \
                    else None
                picks[mode] = engine.score(paths, horizon, goal, views=views).table.best_index
                seconds.setdefault(mode, []).append(time.perf_counter() - t0)
        speed = float(np.linalg.norm(np.diff(traj.states[:t + 1, :2], axis=0), axis=1).sum()
                      / max(TOUR_DT * t, 1e-6))
        errors = {mode: trajectory_errors(options[i], truth) for mode, i in picks.items()}
        errors["straight line"] = trajectory_errors(
            _planar(_trajectory(start, speed * TOUR_DT * k, 0.0, 0.0, k)), truth)
        nearest = min(range(len(options)), key=lambda i: trajectory_errors(options[i], truth)[0])
        errors["nearest candidate"] = trajectory_errors(options[nearest], truth)
        for mode, e in errors.items():
            rows.setdefault(mode, []).append(e)
        log(f"offline case {c:3d} {_short(name):>16} t={t:2d} k={k}: " + ", ".join(
            f"{m} {e[0]:.2f}/{e[1]:.2f}" for m, e in errors.items()) + " (ATE/RPE m)")
    return {mode: {"ate": float(np.mean([e[0] for e in v])),
                   "ate_ci": mean_ci([e[0] for e in v])[1],
                   "rpe": float(np.mean([e[1] for e in v])),
                   "rpe_ci": mean_ci([e[1] for e in v])[1],
                   "seconds": float(np.median(seconds[mode])) if mode in seconds else None,
                   "cases": len(v)} for mode, v in rows.items()}


# ----------------------------------------------------------------------------- running


def _worker_init(device: str, checkpoint: str | None, threads: int) -> None:
    torch.set_num_threads(threads)
    global _MODEL
    _MODEL = (WorldModel.load(checkpoint, device) if checkpoint else WorldModel.default(device))


_MODEL: WorldModel | None = None


def _run(job: tuple[Episode, str, dict, dict]) -> Result:
    episode, planner, critic_params, engine_options = job
    return run_episode(episode, planner, _MODEL, critic_params, engine_options)


def run_all(episodes: Sequence[Episode], planners: Sequence[str], device: str,
            checkpoint: str | None, workers: int, log=print,
            critic_params: dict[str, dict] | None = None,
            engine_options: dict | None = None) -> list[Result]:
    jobs = [(e, p, critic_params or {}, engine_options or {}) for p in planners
            for e in episodes]
    results = []

    def log_result(r: Result) -> None:
        e = episodes[r.episode]
        rho = f", rho {np.nanmean(r.rhos):.2f}" if r.rhos else ""
        log(f"episode {r.episode:3d} {_short(e.scene):>16} {e.goal_kind:>12} {r.planner:>11}: "
            f"{r.outcome:9} after {r.seconds:5.1f} s, {r.driven:4.1f} m driven "
            f"(route {e.shortest:.1f} m), {r.final_distance:.2f} m from the goal, "
            f"{r.decisions} decisions, median {1e3 * np.median(r.latencies):.0f} ms{rho}")

    if workers <= 1:
        _worker_init(device, checkpoint, torch.get_num_threads())
        for job in jobs:
            results.append(_run(job))
            log_result(results[-1])
        return results
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    with mp.get_context("spawn").Pool(workers, _worker_init,
                                      (device, checkpoint, threads)) as pool:
        for r in pool.imap_unordered(_run, jobs):
            results.append(r)
            log_result(r)
    results.sort(key=lambda r: (planners.index(r.planner), r.episode))
    return results


def _parse_value(text: str) -> bool | int | float | str:
    """A command-line parameter value: true/false, an integer, a number, else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=9)
    p.add_argument("--planners", default=",".join(PLANNERS))
    p.add_argument("--goals", default=",".join(GOAL_KINDS),
                   help=f"goal kinds cycled over episodes, from {', '.join(GOAL_KINDS)}")
    p.add_argument("--scenes", help="comma-separated: procedural:SEED, "
                   f"{', '.join(HAND_BUILT)} or MJCF paths (default: held-out seeds "
                   f"{', '.join(map(str, PROCEDURAL_SEEDS))} and the hand-built scenes)")
    p.add_argument("--mjcf", help="one MJCF scene of your own instead of --scenes")
    p.add_argument("--start", help="x,y,yaw where the tour starts in --mjcf (default: a free "
                   "spot inside the building)")
    p.add_argument("--tour-frames", type=int, default=24)
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", help="world model weights (default: the shipped ones)")
    p.add_argument("--workers", type=int, default=1, help="episodes run in this many processes")
    p.add_argument("--out", help="directory for results.json and one PNG per planner")
    p.add_argument("--critic-param", action="append", default=[], metavar="CRITIC.NAME=VALUE",
                   help="replace a critic parameter's default, e.g. clearance.min_height=0.05 "
                   "(repeatable)")
    p.add_argument("--noise-scale", type=float, default=EngineConfig.noise_scale,
                   help="the flow sampler's starting noise scale (EngineConfig.noise_scale)")
    p.add_argument("--seeds", default=str(EngineConfig.seed),
                   help="comma-separated imagination noise seeds (EngineConfig.seed): every "
                   "episode runs once per seed, and the spread over seeds is reported (one "
                   "seed's success count moved by 12 of 72 episodes with the seed alone)")
    p.add_argument("--offline-cases", type=int, default=0,
                   help="also run Navigation World Models' offline protocol on this many "
                   "held-out tours (start frame, goal image 4-8 frames ahead)")
    p.add_argument("--report", metavar="RESULTS_JSON", help="print the tables and redraw the "
                   "PNGs of an earlier run's results.json (next to it) instead of running")
    args = p.parse_args(argv)
    if args.report:
        return report_file(Path(args.report))
    planners = [s.strip() for s in args.planners.split(",") if s.strip()]
    kinds = [s.strip() for s in args.goals.split(",") if s.strip()]
    bad = [x for x in planners if x not in PLANNERS] + [x for x in kinds if x not in GOAL_KINDS]
    if bad or not planners or not kinds or args.episodes < 1:
        p.error(f"unknown planner or goal kind {bad}; planners: {', '.join(PLANNERS)}; goals: "
                f"{', '.join(GOAL_KINDS)}; --episodes >= 1")
    if args.start and not args.mjcf:
        p.error("--start needs --mjcf")
    start = None
    if args.start:
        try:
            start = [float(v) for v in args.start.split(",")]
        except ValueError:
            start = []
        if len(start) != 3 or not all(math.isfinite(v) for v in start):
            p.error(f"--start must be x,y,yaw, got {args.start!r}")
    critic_params: dict[str, dict] = {}
    for item in args.critic_param:
        key, sep, value = item.partition("=")
        critic, dot, param = key.partition(".")
        if not (sep and dot and critic and param):
            p.error(f"--critic-param must be CRITIC.NAME=VALUE, got {item!r}")
        critic_params.setdefault(critic, {})[param] = _parse_value(value)
    try:
        for name, params in critic_params.items():
            make_critic(name, params)
    except ValueError as err:
        p.error(str(err))
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"--seeds must list distinct integers, got {args.seeds!r}")
        for seed in seeds:
            EngineConfig(noise_scale=args.noise_scale, seed=seed)
    except ValueError as err:
        p.error(str(err))
    scenes = scene_names(args.scenes, args.mjcf)
    for name in scenes:
        load(name)  # a bad scene fails here, before any episode runs
    t0 = time.perf_counter()
    episodes = plan_episodes(args.episodes, scenes, kinds, args.tour_frames, start)
    print(f"{len(episodes)} episodes over {len(scenes)} scenes planned in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    engine_options = {seed: {"noise_scale": args.noise_scale, "seed": seed} for seed in seeds}
    per_seed = {}
    for seed in seeds:
        if len(seeds) > 1:
            print(f"seed {seed}:", flush=True)
        per_seed[seed] = run_all(episodes, planners, args.device, args.checkpoint,
                                 args.workers, log=lambda line: print(line, flush=True),
                                 critic_params=critic_params,
                                 engine_options=engine_options[seed])
    offline = None
    if args.offline_cases > 0:
        model = WorldModel.load(args.checkpoint, args.device) if args.checkpoint \
            else WorldModel.default(args.device)
        offline = offline_protocol(args.offline_cases, scenes, model,
                                   log=lambda line: print(line, flush=True))
    out = Path(args.out) if args.out else None
    summaries = {}
    for seed, results in per_seed.items():
        settings = {"fan": FAN, "horizon": HORIZON, "replan": REPLAN,
                    "robot_radius": ROBOT_RADIUS, "tour_frames": args.tour_frames,
                    "device": args.device, "goals": kinds, "planners": planners,
                    "critic_params": critic_params,
                    "engine_options": engine_options[seed],
                    "command": " ".join(sys.argv)}
        if len(seeds) > 1:
            print(f"\n=== seed {seed}")
        summaries[seed] = report(episodes, results, planners, kinds, offline, settings,
                                 out if out is None or len(seeds) == 1
                                 else out / f"seed-{seed}")
    if len(seeds) > 1:
        spread = seed_spread(summaries, planners)
        print(f"\nover seeds {', '.join(map(str, seeds))} (mean +- standard deviation "
              "[lowest, highest]):")
        for pl in planners:
            print(seed_line(pl, spread[pl]))
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "seeds.json").write_text(json.dumps(
                {"seeds": seeds, "spread": spread, "command": " ".join(sys.argv)}, indent=1))
    return 0


def seed_spread(summaries: dict[int, dict[str, dict]], planners: Sequence[str]) -> dict:
    """Per planner, the spread over seeds (``summaries``: seed -> planner -> ``summarize``
    of that seed's run) of success and collision counts and SPL: mean, standard deviation
    (0 for one seed), lowest and highest, and the per-seed values in seed order."""
    out = {}
    for pl in planners:
        row = {"episodes": next(iter(summaries.values()))[pl]["episodes"]}
        for key in ("success", "collisions", "spl"):
            v = np.array([summaries[s][pl][key] for s in summaries], dtype=np.float64)
            row[key] = {"mean": float(v.mean()),
                        "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                        "min": float(v.min()), "max": float(v.max()), "values": v.tolist()}
        out[pl] = row
    return out


def seed_line(planner: str, row: dict) -> str:
    def f(key: str, fmt: str) -> str:
        r = row[key]
        return (f"{r['mean']:{fmt}} +- {r['sd']:{fmt}} [{r['min']:{fmt}}, "
                f"{r['max']:{fmt}}]")
    n = row["episodes"]
    return (f"{planner}: success {f('success', '.1f')} of {n}, collisions "
            f"{f('collisions', '.1f')} of {n}, SPL {f('spl', '.3f')}")


def report(episodes: Sequence[Episode], results: Sequence[Result], planners: Sequence[str],
           kinds: Sequence[str], offline: dict | None, settings: dict,
           out: Path | None) -> dict[str, dict]:
    """Print the tables (per scene style and goal kind, then all episodes with intervals, then
    one line per planner) and, with ``out``, write results.json and one PNG per planner.
    Returns each planner's ``summarize``."""
    summaries = {pl: summarize([r for r in results if r.planner == pl]) for pl in planners}
    groups = {}
    for style in ("procedural", "hand-built"):
        for kind in dict.fromkeys(kinds):
            ids = {e.index for e in episodes if scene_style(e.scene) == style
                   and e.goal_kind == kind}
            if ids:
                groups[f"{style}, {kind}"] = {
                    pl: summarize([r for r in results if r.planner == pl and r.episode in ids])
                    for pl in planners}
    print()
    for name, per in groups.items():
        print(f"{name} ({per[planners[0]]['episodes']} episodes):")
        for pl in planners:
            print("  " + summary_line(pl, per[pl]))
    print("\nall episodes, 95% intervals:")
    for pl in planners:
        print(detail_line(pl, summaries[pl]))
    if offline:
        count = len(OFFLINE_LENGTHS) * len(OFFLINE_CURVATURES) + len(OFFLINE_SPINS)
        cases = next(iter(offline.values()))["cases"]
        print(f"\nNavigation World Models' offline protocol, {cases} held-out tour cases, best "
              f"of {count} candidates by goal_image:")
        for mode, r in offline.items():
            took = f", {1e3 * r['seconds']:.0f} ms per ranking" if r["seconds"] else ""
            print(f"  {mode:>17}: ATE {r['ate']:.2f} +- {r['ate_ci']:.2f} m, RPE "
                  f"{r['rpe']:.2f} +- {r['rpe_ci']:.2f} m{took}")
    if out is not None:
        from mirage_ros.rollout.figures import save_png

        out.mkdir(parents=True, exist_ok=True)
        record = {"episodes": [e.describe() for e in episodes], "offline": offline,
                  "results": [dataclasses.asdict(r) for r in results],
                  "summary": summaries, "groups": groups, "settings": settings}
        (out / "results.json").write_text(json.dumps(record, indent=1, default=float))
        chosen = figure_episodes(episodes, results)
        for pl in planners:
            path = save_png(out / f"paths_{pl}.png", planner_figure(episodes, results, pl, chosen))
            print(f"wrote {path}")
    print()
    for pl in planners:
        print(summary_line(pl, summaries[pl]))
    return summaries


def report_file(path: Path) -> int:
    """``--report``: the tables and pictures again from a results.json, without running."""
    record = json.loads(path.read_text())
    episodes = [Episode.from_record(d) for d in record["episodes"]]
    results = [Result(**r) for r in record["results"]]
    for r in results:  # records from before collisions were classified
        if r.outcome == "collision" and r.hit is None and r.driven_xy:
            r.hit = collision_cause(load(episodes[r.episode].scene), r.driven_xy[-1])
    settings = record["settings"]
    planners = settings.get("planners") or list(dict.fromkeys(r.planner for r in results))
    kinds = settings.get("goals") or list(dict.fromkeys(e.goal_kind for e in episodes))
    report(episodes, results, planners, kinds, record.get("offline"), settings, path.parent)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())

"""Pair each camera image with its depth image, intrinsics and base pose.

Images, depth images, camera info and poses arrive as four independent streams, each with its
own rate, latency and order. :class:`ObservationPairer` turns them into :class:`Observation`\\ s,
one per image, with everything the memory needs to place that image in the map. The node feeds
it live; the bag importer feeds it a recording in the order it was recorded; both therefore pair
frames by the same rules. Fed the same messages in the same order, it gives the same result:
nothing here reads a clock.

An image becomes an observation (returned by :meth:`~ObservationPairer.pop_ready`) when all of
these are known:

* **camera info** (the latest one given, whatever its arrival time: intrinsics do not change
  while a camera runs; images before the first one wait for it) of the image's size; a
  different size drops the image (``camera_info_size_mismatch``);
* **a pose**, as :meth:`PoseBuffer.at` gives it within ``tolerance``. The image waits until a
  pose stamped at or after it has arrived, so the pose is interpolated rather than held from an
  older sample. If the poses around it cannot give one, it is dropped (``pose_out_of_tolerance``);
* **depth**, one of:
    - the depth image nearest in stamp, if within ``tolerance`` of the image. The image waits
      until a depth stamped at or after it has arrived (a nearer one could still come); if the
      nearest is farther than ``tolerance`` it is dropped (``depth_out_of_tolerance``), and a
      nearest depth of another size drops it too (``depth_size_mismatch``);
    - no depth, when no depth image has been seen recently: never since the start (or the
      last clock reset), or none stamped within ``depth_timeout`` before ``now``. A camera
      without depth thus costs no latency, and one whose depth stream stops keeps working on
      colour alone once the timeout has passed.

Waiting images are kept in stamp order, at most ``max_pending`` of them: the oldest is dropped
beyond that and counted by what it still waited for (``no_camera_info``, ``no_pose``,
``no_depth``). Observations come out in strictly increasing stamp order; an image not newer than
the last observation returned is dropped (``late``). A clock jump back (any stream more than
:data:`CLOCK_JUMP_BACK` s behind its own newest stamp: a simulation or bag restart) discards all
waiting images (``clock_reset``), depth images and poses, keeping the camera info. Depth images
discarded without ever being paired are counted as ``depth_unused``.

``now`` (for the depth timeout) is in the clock of the stamps; by default it is the newest stamp
seen on any stream, which keeps a replay deterministic. The node may pass its own clock's time
(it follows ``/clock`` under ``use_sim_time``).

Cost per message: O(log n) inserts into buffers of at most ``max_pending`` (images),
``2 * max_pending`` (depth) and the pose buffer's bound; :meth:`pop_ready` is O(max_pending).
Arrays are kept by reference, not copied: do not write into an array after handing it over.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry import PinholeCamera
from mirage_ros.sensors.pose_buffer import CLOCK_JUMP_BACK, PoseBuffer, check_pose

__all__ = ["DROP_REASONS", "FIELD_OF_VIEW", "Observation", "ObservationPairer", "check_intrinsics"]

# Every reason an input can be dropped for; `ObservationPairer.dropped` has all of them as keys.
DROP_REASONS = (
    "camera_info_size_mismatch",  # image size differs from the camera info's
    "pose_out_of_tolerance",  # poses around the image, none usable within tolerance
    "depth_out_of_tolerance",  # depth stream active, nearest depth farther than tolerance
    "depth_size_mismatch",  # nearest depth image has another size than the colour image
    "no_camera_info",  # given up (queue full, or flushed) while waiting for camera info
    "no_pose",  # given up while waiting for a pose
    "no_depth",  # given up while waiting for depth
    "late",  # not newer than the last observation returned
    "clock_reset",  # waiting when the clock jumped back
    "depth_unused",  # a depth image discarded without being paired with any image
)


class _Wait:
    """What an image still waits for; its reason is the drop reason if it is given up on."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_WAIT_CAMERA_INFO = _Wait("no_camera_info")
_WAIT_POSE = _Wait("no_pose")
_WAIT_DEPTH = _Wait("no_depth")


# eq=False: fields are arrays, so field-wise == would be ambiguous; identity it is.
@dataclass(frozen=True, eq=False)
class Observation:
    """One camera image with everything needed to place it in the map.

    ``rgb`` uint8 ``[H, W, 3]``; ``depth`` float32 ``[H, W]`` metres (0 = invalid) or None;
    ``K`` float64 ``[3, 3]`` pixel intrinsics in *our* grid-edge convention
    (:mod:`mirage_ros.geometry.camera`: ``cx = cx_ros + 0.5``); ``base_to_map`` float64
    ``[4, 4]``, the base pose at ``stamp`` (the camera pose is this times the camera mount).
    """

    stamp: float
    rgb: NDArray
    depth: NDArray | None
    K: NDArray
    base_to_map: NDArray


@dataclass
class _Depth:
    stamp: float
    depth: NDArray
    used: bool = False


# Degrees: the fields of view a pinhole camera info may give (focal lengths are in pixels, so a
# focal length in metres, or a denormal or absurd one, falls outside).
FIELD_OF_VIEW = (0.1, 179.0)


def check_intrinsics(camera: PinholeCamera) -> None:
    """ValueError unless ``camera`` is a plausible pinhole: horizontal and vertical fields of
    view within :data:`FIELD_OF_VIEW` degrees, and the principal point at most one image size
    outside the image. Finite, positive values alone let a focal length of 1e-310 px through,
    which the memory then refused frame by frame."""
    lo, hi = FIELD_OF_VIEW
    for name, f, size in (("fx", camera.fx, camera.width), ("fy", camera.fy, camera.height)):
        fov = math.degrees(2.0 * math.atan(size / (2.0 * f)))
        if not lo <= fov <= hi:
            raise ValueError(
                f"camera_info {name} = {f:.6g} px gives a {fov:.4g} degree field of view over "
                f"{size} px; expected {lo:g} to {hi:g} degrees (focal lengths are in pixels)")
    for name, c, size in (("cx", camera.cx, camera.width), ("cy", camera.cy, camera.height)):
        if not -size <= c <= 2 * size:  # c in our grid-edge convention; the message in ROS's
            raise ValueError(f"camera_info principal point {name} = {c - 0.5:.6g} px lies more "
                             f"than one image size ({size} px) outside the image")


def _stamp(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} stamp must be finite, got {value}")
    return value


def _newer(newest: float | None, stamp: float) -> float:
    return stamp if newest is None else max(newest, stamp)


class ObservationPairer:
    """Images + depth + camera info + poses -> :class:`Observation` (see the module docstring).

    ``tolerance`` (s): largest stamp difference between an image and its depth image, and the
    tolerance of the pose lookup. ``depth_timeout`` (s): how long after the newest depth image
    depth is still expected (``math.inf``: always, once one was seen). ``max_pending``: images
    kept waiting. ``poses``: the pose buffer to use (default ``PoseBuffer()``).
    """

    def __init__(
        self,
        tolerance: float = 0.05,
        depth_timeout: float = 0.5,
        max_pending: int = 8,
        *,
        poses: PoseBuffer | None = None,
    ) -> None:
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
        if not depth_timeout >= 0:
            raise ValueError(f"depth_timeout must be >= 0, got {depth_timeout}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.tolerance = float(tolerance)
        self.depth_timeout = float(depth_timeout)
        self.max_pending = int(max_pending)
        self.poses = poses if poses is not None else PoseBuffer()
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.resets = 0
        self._K: NDArray | None = None
        self._size: tuple[int, int] | None = None  # (height, width) of the camera info
        self._clear_streams()

    def _clear_streams(self) -> None:
        self._pending: list[tuple[float, NDArray]] = []  # (stamp, rgb), sorted by stamp
        self._ready: list[Observation] = []  # decided while the queue was full, not yet popped
        self._pending_stamps: list[float] = []
        self._depths: list[_Depth] = []  # sorted by stamp
        self._depth_stamps: list[float] = []
        self._newest_image: float | None = None
        self._newest_depth: float | None = None
        self._newest: float | None = None  # any stream: the default `now`
        self._last_emitted: float | None = None

    # --- inputs ---------------------------------------------------------------------------------

    def set_camera_info(self, K_ros: ArrayLike, width: int, height: int) -> None:
        """Intrinsics for the following observations: ROS ``CameraInfo.k`` (3x3, or its 9
        values) and the image size. ValueError unless finite with fx, fy > 0, zero skew and a
        positive size, and plausible (:func:`check_intrinsics`); the previous camera info is
        then kept."""
        camera = PinholeCamera.from_ros_k(np.asarray(K_ros, dtype=np.float64), width, height)
        check_intrinsics(camera)
        self._K, self._size = camera.K, (camera.height, camera.width)

    def add_image(self, stamp: float, rgb: NDArray) -> None:
        """A colour image, uint8 ``[H, W, 3]`` RGB. ValueError for another dtype or shape."""
        stamp = _stamp(stamp, "image")
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
                and rgb.shape[2] == 3 and rgb.shape[0] > 0 and rgb.shape[1] > 0):
            raise ValueError(
                f"rgb must be a uint8 [H, W, 3] array, got "
                f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}")
        if self._newest_image is not None and stamp < self._newest_image - CLOCK_JUMP_BACK:
            self._reset()
        self._newest_image = _newer(self._newest_image, stamp)
        self._saw(stamp)
        if self._last_emitted is not None and stamp <= self._last_emitted:
            self.dropped["late"] += 1
            return
        i = bisect.bisect_left(self._pending_stamps, stamp)
        if i < len(self._pending_stamps) and self._pending_stamps[i] == stamp:
            self.dropped["late"] += 1  # a second image with the same stamp: keep the first
            return
        self._pending_stamps.insert(i, stamp)
        self._pending.insert(i, (stamp, rgb))
        if len(self._pending) > self.max_pending:
            # Whatever is decided already leaves the queue first (kept for the next pop).
            self._ready += self._pop(self._now(None), final=False)
        while len(self._pending) > self.max_pending:
            old_stamp, old_rgb = self._pending[0]
            waiting = self._decide(old_stamp, old_rgb, self._now(None), final=False)
            assert isinstance(waiting, _Wait)  # anything decided was popped just above
            self.dropped[waiting.reason] += 1
            del self._pending[0], self._pending_stamps[0]

    def add_depth(self, stamp: float, depth_m: NDArray) -> None:
        """A depth image, float32 ``[H, W]`` metres with 0 = invalid (see
        :func:`mirage_ros.sensors.depth.decode_depth`). ValueError for another dtype or shape."""
        stamp = _stamp(stamp, "depth")
        if not (isinstance(depth_m, np.ndarray) and depth_m.dtype == np.float32
                and depth_m.ndim == 2 and depth_m.shape[0] > 0 and depth_m.shape[1] > 0):
            raise ValueError(
                f"depth must be a float32 [H, W] array, got "
                f"{getattr(depth_m, 'dtype', type(depth_m).__name__)} "
                f"{getattr(depth_m, 'shape', '')}")
        if self._newest_depth is not None and stamp < self._newest_depth - CLOCK_JUMP_BACK:
            self._reset()
        self._newest_depth = _newer(self._newest_depth, stamp)
        self._saw(stamp)
        i = bisect.bisect_left(self._depth_stamps, stamp)
        if i < len(self._depth_stamps) and self._depth_stamps[i] == stamp:
            self._discard_depth(i)  # the newer message with the same stamp wins
        self._depth_stamps.insert(i, stamp)
        self._depths.insert(i, _Depth(stamp, depth_m))
        while len(self._depths) > 2 * self.max_pending:
            self._discard_depth(0)

    def add_pose(self, stamp: float, base_to_map: ArrayLike) -> None:
        """A base pose ``[4, 4]`` (base_link -> map). ValueError if it is not a finite rigid
        transform; nothing changes then."""
        stamp = _stamp(stamp, "pose")
        pose = check_pose(base_to_map)
        newest = self.poses.newest_stamp
        if newest is not None and stamp < newest - CLOCK_JUMP_BACK:
            self._reset()
        self.poses.add(stamp, pose)
        self._saw(stamp)

    # --- outputs --------------------------------------------------------------------------------

    def pop_ready(self, now: float | None = None) -> list[Observation]:
        """The observations decided since the last call, in increasing stamp order.

        Images still waiting stay pending; images that cannot be paired are dropped and counted.
        """
        out, self._ready = self._ready + self._pop(self._now(now), final=False), []
        return out

    def flush(self) -> list[Observation]:
        """End of the streams (a recording ends): decide every waiting image on what has
        arrived, with no more waiting. Images still lacking something are dropped and counted;
        depth images are discarded. Poses and camera info are kept."""
        out, self._ready = self._ready + self._pop(self._now(None), final=True), []
        while self._depths:
            self._discard_depth(0)
        return out

    @property
    def pending(self) -> int:
        """Images waiting for something."""
        return len(self._pending)

    @property
    def camera_info(self) -> tuple[NDArray, tuple[int, int]] | None:
        """``(K ours, (height, width))`` of the current camera info, or None."""
        return None if self._K is None else (self._K.copy(), self._size)

    # --- internals ------------------------------------------------------------------------------

    def _saw(self, stamp: float) -> None:
        self._newest = _newer(self._newest, stamp)

    def _now(self, now: float | None) -> float:
        if now is not None:
            return float(now)
        return self._newest if self._newest is not None else -math.inf

    def _reset(self) -> None:
        # Observations decided before the jump are still valid: only the waiting ones go.
        ready = self._ready
        self.dropped["clock_reset"] += len(self._pending)
        while self._depths:
            self._discard_depth(0)
        self.poses.clear()
        self.resets += 1
        self._clear_streams()
        self._ready = ready

    def _discard_depth(self, i: int) -> None:
        if not self._depths[i].used:
            self.dropped["depth_unused"] += 1
        del self._depths[i], self._depth_stamps[i]

    def _pop(self, now: float, final: bool) -> list[Observation]:
        out: list[Observation] = []
        done = 0
        for stamp, rgb in self._pending:
            result = self._decide(stamp, rgb, now, final)
            if isinstance(result, _Wait):
                # Every condition waited for is monotone in the stamp, so all later images
                # wait too; stopping here keeps the output in stamp order.
                break
            done += 1
            if isinstance(result, str):
                self.dropped[result] += 1
            else:
                out.append(result)
        del self._pending[:done], self._pending_stamps[:done]
        if out:
            self._last_emitted = out[-1].stamp
        self._prune_depths()
        return out

    def _decide(
        self, stamp: float, rgb: NDArray, now: float, final: bool
    ) -> Observation | str | _Wait:
        """An observation, a drop reason, or what the image waits for (never when ``final``)."""
        if self._K is None:
            return "no_camera_info" if final else _WAIT_CAMERA_INFO
        if rgb.shape[:2] != self._size:
            return "camera_info_size_mismatch"
        newest_pose = self.poses.newest_stamp
        if newest_pose is None:
            return "no_pose" if final else _WAIT_POSE
        if newest_pose < stamp and not final:
            return _WAIT_POSE
        pose = self.poses.at(stamp, self.tolerance)
        if pose is None:
            return "pose_out_of_tolerance"
        depth = None
        if self._newest_depth is not None:
            decided = self._newest_depth >= stamp
            active = now - self._newest_depth <= self.depth_timeout
            if active and not decided and not final:
                return _WAIT_DEPTH
            nearest = self._nearest_depth(stamp)
            if nearest is not None:
                if nearest.depth.shape != rgb.shape[:2]:
                    return "depth_size_mismatch"
                nearest.used = True
                depth = nearest.depth
            elif decided:
                return "depth_out_of_tolerance"
            elif active:
                return "no_depth"
        # Each observation owns its K (3x3: copying is cheaper than explaining aliasing).
        return Observation(stamp, rgb, depth, self._K.copy(), pose)

    def _nearest_depth(self, stamp: float) -> _Depth | None:
        i = bisect.bisect_left(self._depth_stamps, stamp)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self._depths):
                d = abs(self._depth_stamps[j] - stamp)
                if d <= self.tolerance and (best is None or d < best[0]):
                    best = (d, j)
        return None if best is None else self._depths[best[1]]

    def _prune_depths(self) -> None:
        # No future image can use a depth image older than this: pending images are newer than
        # the last observation, and new images older than it are dropped as late.
        if self._pending_stamps:
            horizon = self._pending_stamps[0]
        elif self._last_emitted is not None:
            horizon = self._last_emitted
        else:
            return
        cut = bisect.bisect_left(self._depth_stamps, horizon - self.tolerance)
        for _ in range(cut):
            self._discard_depth(0)

"""Offscreen RGB-D rendering of a scene from any camera pose, with our pinhole intrinsics.

One render pass gives both images: colour (uint8 RGB) and metric depth (float32 metres, z along
the optical axis, 0 where nothing was hit within ``far``).

Conventions handled here, once:

* Pose. MuJoCo cameras look along their -z axis with +y up; our optical frame (REP-103) looks
  along +z with +y down. They share x, so ``R_mujoco = R_optical @ diag(1, -1, -1)``. The pose is
  written straight into ``MjData.cam_xpos/cam_xmat`` of the scene's camera: no physics step.
* Intrinsics. After MuJoCo has set up the scene, the OpenGL frustum of the camera is replaced by
  the one of our ``K`` (grid-edge convention: the image spans ``[0, w] x [0, h]``): at the near
  plane ``n``, ``top = n cy / fy``, ``bottom = -n (h - cy) / fy`` and the horizontal centre is
  ``n (w / 2 - cx) / fx``. MuJoCo derives the horizontal extent from the viewport's aspect ratio,
  so pixels must be square (``fx == fy``); any principal point works.
* Depth. MuJoCo 3.3+ renders with a reversed, zero-at-far depth buffer; a buffer value ``d``
  maps to ``z = n f / (n + d (f - n))`` for the near/far planes ``n, f`` in metres.
* Rows. OpenGL reads images bottom-up; both images are flipped to the usual top-down order.
* Sky. A model with a skybox texture (common in user MJCF files) has MuJoCo draw a textured
  shell around the camera just inside the far plane (about ``0.7 far`` out along the axes), and
  it writes depth like any surface, which would read as a wall tens of metres away. Depth beyond
  ``sky_depth`` (the nearest the shell can come inside this camera's view, less 5 %) is set to
  0 in such models: sky is "nothing hit", as it is without a skybox. A real surface farther than
  that (about 0.38 ``far`` for a 90-degree camera) is dropped too; raise ``far`` for scenes that
  large.

The OpenGL backend is MuJoCo's: ``mirage_ros.sim`` sets ``MUJOCO_GL=egl`` unless it is set.
"""

from __future__ import annotations

import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry import PinholeCamera
from mirage_ros.sim.scene import Scene

__all__ = ["MUJOCO_FROM_OPTICAL", "Renderer"]

# Optical axes (x right, y down, z forward) -> MuJoCo camera axes (x right, y up, z backward).
MUJOCO_FROM_OPTICAL = np.diag([1.0, -1.0, -1.0])
# Largest shadow map a "fast" renderer keeps: MuJoCo's default 4096 map makes a CPU frame ~10x
# slower.
_FAST_SHADOW_SIZE = 512
# Geom group that MjvOption's defaults never draw (groups 0-2 are drawn, 3-5 are not).
_HIDDEN_GROUP = 5


class Renderer:
    """Renders ``scene`` through ``camera``; one OpenGL context per renderer.

    ``fast`` caps the shadow map at 512 and disables multisampling in the model (scenes from
    :mod:`mirage_ros.sim.procedural` already are; user models may not be). ``shadows`` turns
    shadow mapping on: on a CPU (llvmpipe) every shadow-casting light costs about 3-4 ms per
    frame, three times the rest of the frame, so it is off unless asked for; on a GPU it is
    nearly free. ``cull`` skips geoms outside the view (same image, about half the time on a
    CPU; always off with shadows). ``near`` and ``far`` (metres) clip the view; depth beyond
    ``far`` reads as 0.
    """

    def __init__(
        self,
        scene: Scene,
        camera: PinholeCamera,
        *,
        near: float = 0.05,
        far: float = 100.0,
        fast: bool = True,
        shadows: bool = False,
        cull: bool = True,
    ) -> None:
        if abs(camera.fx - camera.fy) > 1e-6 * camera.fx:
            raise ValueError(
                f"MuJoCo renders square pixels only; got fx={camera.fx}, fy={camera.fy}")
        if not 0.0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        self.scene = scene
        self.camera = camera
        self.near, self.far = float(near), float(far)
        model = scene.model
        if fast:
            model.vis.quality.shadowsize = min(model.vis.quality.shadowsize, _FAST_SHADOW_SIZE)
            model.vis.quality.offsamples = 0
        # Stereo eye separation would shift the rendered camera off the pose we set.
        model.vis.global_.ipd = 0.0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, camera.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, camera.height)

        self._gl = mujoco.GLContext(camera.width, camera.height)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._context.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._scene = mujoco.MjvScene(model, maxgeom=max(1000, 2 * model.ngeom))
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
        self._option = mujoco.MjvOption()
        self._vcam = mujoco.MjvCamera()
        self._vcam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._vcam.fixedcamid = scene.camera_id
        self._rect = mujoco.MjrRect(0, 0, camera.width, camera.height)
        # View-frustum culling (see _hide_outside); shadows may fall from geoms outside the view,
        # so everything is drawn when they are on.
        self._cull = cull and not shadows
        self._groups = model.geom_group.copy()
        self._rbound = np.where(model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE, np.inf,
                                model.geom_rbound)
        u0, u1 = -camera.cx / camera.fx, (camera.width - camera.cx) / camera.fx
        v0, v1 = -camera.cy / camera.fy, (camera.height - camera.cy) / camera.fy
        planes = np.array([[1.0, 0.0, -u0], [-1.0, 0.0, u1], [0.0, 1.0, -v0], [0.0, -1.0, v1]])
        self._planes = planes / np.linalg.norm(planes, axis=1, keepdims=True)
        self._rgb = np.empty((camera.height, camera.width, 3), dtype=np.uint8)
        self._depth = np.empty((camera.height, camera.width), dtype=np.float32)
        # The skybox shell's half-size is 0.7 far (MuJoCo keeps it just below far / sqrt(2) so
        # that no corner is clipped); along a ray at angle a off the optical axis it is at least
        # 0.7 far cos(a) deep, and a is largest at an image corner.
        corner = max(np.hypot(u, v) for u in (u0, u1) for v in (v0, v1))
        has_sky = bool((model.tex_type == mujoco.mjtTexture.mjTEXTURE_SKYBOX).any())
        self.sky_depth = 0.95 * 0.7 * self.far / np.hypot(1.0, corner) if has_sky else None
        n, w, h = self.near, camera.width, camera.height
        self._frustum = (
            n * (0.5 * w - camera.cx) / camera.fx,  # centre
            n * 0.5 * w / camera.fx,  # half width (informative; MuJoCo uses the aspect)
            -n * (h - camera.cy) / camera.fy,  # bottom
            n * camera.cy / camera.fy,  # top
        )

    def render(self, cam_to_map: ArrayLike) -> tuple[NDArray, NDArray]:
        """RGB ``[h, w, 3]`` uint8 and depth ``[h, w]`` float32 metres from the optical-frame
        pose ``cam_to_map`` (4x4). Both arrays are new."""
        T = np.asarray(cam_to_map, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"cam_to_map must be a finite 4x4 transform, got shape {T.shape}")
        model, data, cid = self.scene.model, self.scene.data, self.scene.camera_id
        data.cam_xpos[cid] = T[:3, 3]
        data.cam_xmat[cid] = (T[:3, :3] @ MUJOCO_FROM_OPTICAL).ravel()
        if self._cull:
            self._hide_outside(T)
        self._gl.make_current()
        mujoco.mjv_updateScene(model, data, self._option, None, self._vcam,
                               mujoco.mjtCatBit.mjCAT_ALL, self._scene)
        if self._cull:
            model.geom_group[:] = self._groups  # the model is shared: leave it as it was
        centre, half_width, bottom, top = self._frustum
        for eye in self._scene.camera:
            eye.frustum_near, eye.frustum_far = self.near, self.far
            eye.frustum_center, eye.frustum_width = centre, half_width
            eye.frustum_bottom, eye.frustum_top = bottom, top
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self._rgb, self._depth, self._rect, self._context)
        rgb = np.flipud(self._rgb).copy()
        depth = self.buffer_to_depth(np.flipud(self._depth))
        if self.sky_depth is not None:
            depth[depth >= self.sky_depth] = 0.0
        return rgb, depth

    def _hide_outside(self, cam_to_map: NDArray) -> None:
        """Move geoms whose bounding sphere lies outside the view frustum to a hidden group (for
        the scene update only: render() puts the model's groups back right after it).

        On a CPU renderer every geom costs a draw call of about 10 us whether it is seen or
        not, and a camera inside one room of a house sees a fraction of its geoms: culling
        roughly halves the frame time. Visible geoms keep their own group, so a model's own
        group visibility is respected; the image is identical either way.
        """
        model, data = self.scene.model, self.scene.data
        q = (data.geom_xpos - cam_to_map[:3, 3]) @ cam_to_map[:3, :3]  # optical frame
        r = self._rbound
        visible = (q @ self._planes.T >= -r[:, None]).all(axis=1)
        visible &= (q[:, 2] >= self.near - r) & (q[:, 2] <= self.far + r)
        model.geom_group[:] = np.where(visible, self._groups, _HIDDEN_GROUP)

    def buffer_to_depth(self, buffer: ArrayLike) -> NDArray:
        """Metric depth (float32) from reversed depth-buffer values; 0 where nothing was hit."""
        d = np.asarray(buffer, dtype=np.float64)
        n, f = self.near, self.far
        z = n * f / (n + d * (f - n))
        # The far plane itself means "no surface": the buffer holds its clear value there.
        return np.where(d > 0.0, z, 0.0).astype(np.float32)

    def close(self) -> None:
        if self._gl is not None:
            self._context.free()
            self._gl.free()
            self._gl = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

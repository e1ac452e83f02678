"""Headless rendering: an EGL context (no display, no Xvfb) and a framebuffer read back as an image.

This is how tests, docs and machines without a screen see the viewer: exactly the renderer the
window uses, drawn into an offscreen framebuffer.
"""

from __future__ import annotations

import logging

import moderngl
import numpy as np

from holo.errors import ViewerError
from viewer.camera import OrbitCamera
from viewer.render import Eye, Renderer, overlay_text
from viewer.scene import Scene

__all__ = ["Offscreen", "stereo_eyes"]

logger = logging.getLogger(__name__)


class Offscreen:
    def __init__(self, width: int, height: int, *, samples: int = 0) -> None:
        if not (16 <= width <= 8192 and 16 <= height <= 8192):
            raise ViewerError(f"snapshot size {width}x{height} is outside 16..8192 pixels per side")
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")  # type: ignore[arg-type]
        except Exception as exc:  # moderngl raises plain Exceptions for missing EGL/GL
            raise ViewerError(
                f"cannot create a headless OpenGL context through EGL ({exc}); install Mesa's EGL "
                "(libegl1, libgl1-mesa-dri)"
            ) from None
        self.width, self.height = width, height
        self.fbo = self.ctx.framebuffer(
            color_attachments=[self.ctx.renderbuffer((width, height), 4, samples=samples)],
            depth_attachment=self.ctx.depth_renderbuffer((width, height), samples=samples),
        )
        self.renderer = Renderer(self.ctx)

    def render(
        self,
        scene: Scene,
        camera: OrbitCamera,
        *,
        stats_lines: list[str] | None = None,
        stereo_ipd_m: float = 0.0,
    ) -> np.ndarray:
        """One frame as an H x W x 3 RGB array (side by side halves when ``stereo_ipd_m`` > 0)."""
        self.fbo.use()
        visible = scene.snapshot()
        if stereo_ipd_m > 0:
            eyes = stereo_eyes(camera, self.width, self.height, stereo_ipd_m)
        else:
            eyes = [
                Eye(
                    camera.view(),
                    camera.projection(self.width / self.height),
                    (0, 0, self.width, self.height),
                )
            ]
        self.renderer.render(visible, eyes)
        if stats_lines:
            self.renderer.draw_overlay(overlay_text(stats_lines), (0, 0, self.width, self.height))
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)[::-1].copy()

    def finish(self) -> None:
        self.ctx.finish()

    def release(self) -> None:
        self.renderer.release()
        self.fbo.release()
        self.ctx.release()


def stereo_eyes(
    camera: OrbitCamera, width: int, height: int, ipd_m: float, view: np.ndarray | None = None
) -> list[Eye]:
    """Left and right eyes side by side (each half the width), eyes ``ipd_m`` apart."""
    base = camera.view() if view is None else view
    half = width // 2
    proj = camera.projection(half / height)
    eyes = []
    for i, sign in enumerate((-1.0, 1.0)):
        shift = np.eye(4, dtype=np.float32)
        shift[0, 3] = -sign * ipd_m / 2  # eye_from_head: the left eye sits at -x in the head
        eyes.append(Eye(shift @ base, proj, (i * half, 0, half, height)))
    return eyes

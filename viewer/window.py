"""The desktop window (glfw): orbit with the mouse, keys for fullscreen, reset, stats, skeleton.

Mouse: left-drag orbits, right- or middle-drag (or shift-left) pans, the wheel zooms. Keys: F
fullscreen, R reset the view, S stats overlay, K skeletons, P saves a screenshot
(``holo-view-<time>.png`` in the working folder), Esc or Q quits. ``--headset sbs`` turns
the window into side-by-side stereo whose head pose follows the ``holo/headpose`` topic.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np

from holo.errors import ViewerError
from viewer.camera import OrbitCamera
from viewer.render import Eye, Renderer, overlay_text
from viewer.scene import BusFeed, Scene

__all__ = ["run_window"]

logger = logging.getLogger(__name__)


def run_window(scene: Scene, feed: BusFeed | None, width: int, height: int, args: argparse.Namespace) -> int:
    import glfw
    import moderngl

    from viewer.app import fit_camera, stats_lines

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise ViewerError(
            "no display to open a window on (DISPLAY is not set); use --snapshot FILE.png to render "
            "offscreen, or run under Xvfb"
        )
    if not glfw.init():
        raise ViewerError("cannot initialise GLFW (no usable display?); use --snapshot FILE.png instead")
    try:
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        title = "Holo" + (" — stereo" if args.headset == "sbs" else "")
        window = glfw.create_window(width, height, title, None, None)
        if not window:
            raise ViewerError("cannot open a window with an OpenGL 3.3 context")
        glfw.make_context_current(window)
        glfw.swap_interval(1)
        ctx = moderngl.create_context()
        renderer = Renderer(ctx)
        renderer.show_skeleton = not args.no_skeleton
        state = _Input(fit_camera(scene, width / height), show_stats=not args.no_stats)
        _bind_input(glfw, window, state, renderer)
        fitted_for: tuple[str, ...] = ()
        text, text_at = None, 0.0
        while not glfw.window_should_close(window):
            glfw.poll_events()
            names = tuple(scene.names())
            if names != fitted_for and not state.moved:  # follow arrivals until the user takes over
                fw, fh = glfw.get_framebuffer_size(window)
                state.camera = fit_camera(scene, fw / max(fh, 1))
                fitted_for = names
            fw, fh = glfw.get_framebuffer_size(window)
            visible = scene.snapshot()
            if args.headset == "sbs":
                from viewer.offscreen import stereo_eyes

                view = None if scene.headpose is None else np.linalg.inv(scene.headpose).astype(np.float32)
                eyes = stereo_eyes(state.camera, fw, fh, args.ipd_mm / 1000, view=view)
            else:
                eyes = [Eye(state.camera.view(), state.camera.projection(fw / max(fh, 1)), (0, 0, fw, fh))]
            ctx.screen.use()
            renderer.render(visible, eyes)
            if state.show_stats:
                now = time.monotonic()
                if now - text_at > 0.5:
                    text, text_at = overlay_text(stats_lines(scene, feed)), now
                renderer.draw_overlay(text, (0, 0, fw, fh))
            if state.screenshot:
                state.screenshot = False
                _save_screenshot(ctx, fw, fh)
            glfw.swap_buffers(window)
        return 0
    finally:
        glfw.terminate()


class _Input:
    def __init__(self, camera: OrbitCamera, show_stats: bool) -> None:
        self.camera = camera
        self.show_stats = show_stats
        self.moved = False
        self.drag: int | None = None
        self.last = (0.0, 0.0)
        self.fullscreen = False
        self.windowed = (0, 0, 1280, 720)
        self.screenshot = False


def _bind_input(glfw: object, window: object, state: _Input, renderer: Renderer) -> None:
    g = glfw

    def on_button(win: object, button: int, action: int, mods: int) -> None:
        if action == g.PRESS:  # type: ignore[attr-defined]
            pan = button != g.MOUSE_BUTTON_LEFT or mods & g.MOD_SHIFT  # type: ignore[attr-defined]
            state.drag = 1 if pan else 0
            state.last = g.get_cursor_pos(win)  # type: ignore[attr-defined]
        else:
            state.drag = None

    def on_move(win: object, x: float, y: float) -> None:
        if state.drag is None:
            return
        dx, dy = x - state.last[0], y - state.last[1]
        state.last = (x, y)
        state.moved = True
        if state.drag == 0:
            state.camera.orbit(dx, dy)
        else:
            state.camera.pan(dx, dy)

    def on_scroll(win: object, dx: float, dy: float) -> None:
        state.moved = True
        state.camera.zoom(dy)

    def on_key(win: object, key: int, scancode: int, action: int, mods: int) -> None:
        if action != g.PRESS:  # type: ignore[attr-defined]
            return
        if key in (g.KEY_ESCAPE, g.KEY_Q):  # type: ignore[attr-defined]
            g.set_window_should_close(win, True)  # type: ignore[attr-defined]
        elif key == g.KEY_R:  # type: ignore[attr-defined]
            state.camera.reset()
            state.moved = False
        elif key == g.KEY_S:  # type: ignore[attr-defined]
            state.show_stats = not state.show_stats
        elif key == g.KEY_K:  # type: ignore[attr-defined]
            renderer.show_skeleton = not renderer.show_skeleton
        elif key == g.KEY_F:  # type: ignore[attr-defined]
            _toggle_fullscreen(g, win, state)
        elif key == g.KEY_P:  # type: ignore[attr-defined]
            state.screenshot = True

    g.set_mouse_button_callback(window, on_button)  # type: ignore[attr-defined]
    g.set_cursor_pos_callback(window, on_move)  # type: ignore[attr-defined]
    g.set_scroll_callback(window, on_scroll)  # type: ignore[attr-defined]
    g.set_key_callback(window, on_key)  # type: ignore[attr-defined]


def _save_screenshot(ctx: object, width: int, height: int) -> None:
    from viewer.app import _write_png

    data = ctx.screen.read(components=3, alignment=1)  # type: ignore[attr-defined]
    image = np.frombuffer(data, np.uint8).reshape(height, width, 3)[::-1]
    path = time.strftime("holo-view-%Y%m%d-%H%M%S.png")
    _write_png(path, image)
    logger.warning("saved %s", path)


def _toggle_fullscreen(g: object, window: object, state: _Input) -> None:
    if not state.fullscreen:
        x, y = g.get_window_pos(window)  # type: ignore[attr-defined]
        w, h = g.get_window_size(window)  # type: ignore[attr-defined]
        state.windowed = (x, y, w, h)
        monitor = g.get_primary_monitor()  # type: ignore[attr-defined]
        mode = g.get_video_mode(monitor)  # type: ignore[attr-defined]
        g.set_window_monitor(window, monitor, 0, 0, mode.size.width, mode.size.height, mode.refresh_rate)  # type: ignore[attr-defined]
    else:
        x, y, w, h = state.windowed
        g.set_window_monitor(window, None, x, y, w, h, 0)  # type: ignore[attr-defined]
    state.fullscreen = not state.fullscreen

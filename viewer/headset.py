"""``holo view --headset``: the participants in a real headset through OpenXR (an OpenGL session).

How it works: an OpenXR instance with ``XR_KHR_opengl_enable`` and the runtime's head-mounted system;
a hidden GLFW window whose GLX context (OpenGL 3.3 core or newer, checked against the runtime's
graphics requirements) is handed to the runtime with ``XrGraphicsBindingOpenGLXlibKHR`` (X display,
GLX drawable, GLX context). One swapchain per eye at the runtime's recommended size; each swapchain
image (a GL texture the runtime owns) is wrapped in a moderngl framebuffer with its own depth buffer,
and :class:`viewer.render.Renderer` draws into it — the same renderer as the window and snapshots.
The frame loop runs at the runtime's pace (``xrWaitFrame``), locates both views, renders them and
submits one projection layer; session state changes are followed (READY begins the session,
STOPPING ends it, EXITING / LOSS_PENDING quit) and logged at INFO as
``OpenXR session state: FOCUSED``.

Where the participants stand: the scene's frame has the floor at y = 0 and the viewer at the origin
looking along -z, the participants on an arc 2 m away. Rendering uses the runtime's LOCAL space for
x, z and yaw (its origin is where the user's head was when the session started, facing -z), so the
participants appear in front of where the user was looking. LOCAL's origin is at eye height, not on
the floor, so the scene is lifted by the height of LOCAL's origin above the floor: measured from the
STAGE space when the runtime offers one (Monado: 1.6 m), otherwise a fixed
:data:`DEFAULT_EYE_HEIGHT_M` (1.6 m). A person therefore appears at their natural height; the user's
own height above the floor follows the headset (with Monado's scripted "remote" headset, y = 1.6 in
the pose script is a standing eye height; y = 0 is an eye on the floor).

Options read from ``args`` (wired into ``holo view`` as ``--headset-frames N`` and
``--headset-capture DIR``; read with ``getattr`` so a bare Namespace works too):

- ``headset_frames`` (int or None): stop after N rendered frames, then leave the session cleanly
  (request exit, wait for STOPPING, end, destroy). None: run until the runtime ends the session or
  Ctrl-C.
- ``headset_capture`` (directory or None): after rendering each eye of frame k, read the eye image
  back and write ``DIR/eye0_kkkk.png`` / ``DIR/eye1_kkkk.png`` (left, right; k from 0), and append
  one JSON line per rendered frame to ``DIR/frames.jsonl``: ``frame``, ``display_time_ns``,
  ``state``, ``space`` (``LOCAL``), ``eye_height_m`` (the lift from that space to the scene: scene =
  space + (0, eye_height_m, 0)), ``head`` (the located head pose in that space: ``position`` [x, y, z]
  metres, ``orientation`` [x, y, z, w], ``valid``) and ``views`` (per eye ``position``,
  ``orientation`` and ``fov`` [left, right, up, down] radians: exactly what was drawn) and
  ``images``. For checks and tests: compare the images against the poses.

``--size`` does not apply: the runtime recommends each eye's image size. No stats overlay is drawn
in the headset (text glued to the eye is unreadable at the lens edge); skeletons follow
``--no-skeleton``. The GLFW window is deliberately not destroyed at exit: doing so crashed inside
Mesa's GLX; the process exiting releases it.

Errors are :class:`~holo.errors.ViewerError` sentences: no runtime (suggesting ``--headset sbs``),
no headset, no X display, an OpenGL version the runtime refuses, a runtime failing mid-session. The
OpenXR loader's own stderr messages are silenced (``XR_LOADER_DEBUG=none`` unless already set; set
``XR_LOADER_DEBUG=error`` to see them).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from holo.errors import ConfigError, MissingDependencyError, ViewerError
from viewer.camera import perspective_from_fov, pose_matrix
from viewer.render import Eye, Renderer
from viewer.scene import Scene

__all__ = ["DEFAULT_EYE_HEIGHT_M", "run_openxr"]

logger = logging.getLogger(__name__)

#: Height of the LOCAL space's origin above the floor when the runtime has no STAGE space.
DEFAULT_EYE_HEIGHT_M = 1.6

_GL_SRGB8_ALPHA8 = 0x8C43
_GL_RGBA8 = 0x8058
#: Colour formats we can render into, best first. The colours are sRGB-encoded bytes, so an sRGB
#: swapchain (written without GL_FRAMEBUFFER_SRGB) shows them as the desktop window does.
_COLOR_FORMATS = (_GL_SRGB8_ALPHA8, _GL_RGBA8)
_EXIT_TIMEOUT_S = 3.0  # after asking the runtime to end the session, how long to wait for it

_NO_RUNTIME_HINT = "for a headset shown as a second display use --headset sbs"


def _import_xr() -> Any:
    os.environ.setdefault("XR_LOADER_DEBUG", "none")  # the loader's stderr chatter; our sentence says it
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # pyopenxr imports PyOpenGL, which chats at INFO
    try:
        import xr
    except ImportError as exc:
        raise MissingDependencyError(
            f"pyopenxr is not usable ({exc}); install it (pip install pyopenxr) or use --headset sbs"
        ) from None
    return xr


def _no_runtime_reason() -> str:
    path = os.environ.get("XR_RUNTIME_JSON")
    if path:
        if not os.path.isfile(path):
            return f"XR_RUNTIME_JSON names {path}, which does not exist"
        return f"the runtime named by XR_RUNTIME_JSON={path} could not be loaded"
    return "none is installed as the active runtime and XR_RUNTIME_JSON is not set"


@dataclass
class _Swapchain:
    handle: Any
    width: int
    height: int
    framebuffers: list[Any] = field(default_factory=list)  # one moderngl framebuffer per image
    depth: Any = None


class _Stop:
    """Ctrl-C during the frame loop asks for an orderly exit instead of interrupting an xr call."""

    def __init__(self) -> None:
        self.requested = False
        self.interrupted = False
        self._installed = False
        self._previous: Any = None

    def __enter__(self) -> _Stop:
        with contextlib.suppress(ValueError):  # not the main thread: Ctrl-C stays the default
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.requested = self.interrupted = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(
                signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler
            )


class _Headset:
    """One OpenXR instance, system, GL context and session; :meth:`close` tears them down."""

    def __init__(self, xr: Any) -> None:
        self.xr = xr
        self.instance: Any = None
        self.session: Any = None
        self.space: Any = None  # LOCAL: where everything is located and submitted
        self.stage: Any = None
        self.view_space: Any = None
        self.swapchains: list[_Swapchain] = []
        self.ctx: Any = None
        self.window: Any = None
        self.state_name = "UNKNOWN"
        self.running = False  # between xrBeginSession and xrEndSession
        self.quit = False
        self.eye_height_m: float | None = None
        self.system_name = ""
        self.recommended: list[tuple[int, int]] = []
        self.blend_mode: Any = None

    # -- setup -----------------------------------------------------------------------------------------
    def create_instance(self) -> None:
        xr = self.xr
        try:
            extensions = {e.extension_name.decode() for e in xr.enumerate_instance_extension_properties()}
        except xr.exception.RuntimeUnavailableError:
            raise ViewerError(
                f"no OpenXR runtime is available ({_no_runtime_reason()}); {_NO_RUNTIME_HINT}"
            ) from None
        except xr.XrException as exc:
            raise ViewerError(f"no OpenXR runtime is available ({exc}); {_NO_RUNTIME_HINT}") from None
        if xr.KHR_OPENGL_ENABLE_EXTENSION_NAME not in extensions:
            raise ViewerError(
                f"the OpenXR runtime does not offer OpenGL rendering ({xr.KHR_OPENGL_ENABLE_EXTENSION_NAME}); "
                f"{_NO_RUNTIME_HINT}"
            )
        try:
            self.instance = xr.create_instance(
                xr.InstanceCreateInfo(
                    application_info=xr.ApplicationInfo(
                        application_name="Holo",
                        application_version=xr.Version(0, 1, 0),
                        engine_name="holo-viewer",
                        engine_version=xr.Version(0, 1, 0),
                        api_version=xr.Version(1, 0, xr.XR_VERSION_PATCH),
                    ),
                    enabled_extension_names=[xr.KHR_OPENGL_ENABLE_EXTENSION_NAME],
                )
            )
        except xr.exception.RuntimeUnavailableError:
            raise ViewerError(
                f"no OpenXR runtime is available ({_no_runtime_reason()}); {_NO_RUNTIME_HINT}"
            ) from None
        except xr.XrException as exc:
            raise ViewerError(
                f"the OpenXR runtime could not start ({type(exc).__name__}: {str(exc).strip()}); is its service "
                f"running (Monado: monado-service; SteamVR: start SteamVR)? {_NO_RUNTIME_HINT[0].upper()}"
                f"{_NO_RUNTIME_HINT[1:]}."
            ) from None
        props = xr.get_instance_properties(self.instance)
        runtime = props.runtime_name.decode(errors="replace")
        try:
            self.system = xr.get_system(
                self.instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY)
            )
        except (xr.exception.FormFactorUnavailableError, xr.exception.FormFactorUnsupportedError):
            raise ViewerError(
                f"the OpenXR runtime ({runtime}) has no headset connected; plug one in and start it, "
                f"or {_NO_RUNTIME_HINT}"
            ) from None
        self.system_name = xr.get_system_properties(self.instance, self.system).system_name.decode(
            errors="replace"
        )
        views = xr.enumerate_view_configuration_views(
            self.instance, self.system, xr.ViewConfigurationType.PRIMARY_STEREO
        )
        self.recommended = [(v.recommended_image_rect_width, v.recommended_image_rect_height) for v in views]
        modes = list(
            xr.enumerate_environment_blend_modes(
                self.instance, self.system, xr.ViewConfigurationType.PRIMARY_STEREO
            )
        )
        opaque = xr.EnvironmentBlendMode.OPAQUE
        self.blend_mode = opaque if opaque.value in modes or not modes else xr.EnvironmentBlendMode(modes[0])
        logger.info(
            "OpenXR runtime %s %s, headset %s, %s per eye",
            runtime, xr.Version(props.runtime_version), self.system_name,
            ", ".join(f"{w}x{h}" for w, h in self.recommended),
        )  # fmt: skip

    def _gl_requirements(self) -> tuple[Any, Any]:
        xr = self.xr
        get_requirements = ctypes.cast(
            xr.get_instance_proc_addr(self.instance, "xrGetOpenGLGraphicsRequirementsKHR"),
            xr.PFN_xrGetOpenGLGraphicsRequirementsKHR,
        )
        req = xr.GraphicsRequirementsOpenGLKHR()
        result = xr.check_result(xr.Result(get_requirements(self.instance, self.system, ctypes.byref(req))))
        if result.is_exception():
            raise result
        return xr.Version(req.min_api_version_supported), xr.Version(req.max_api_version_supported)

    def create_gl(self) -> None:
        """A hidden GLFW window's GLX context, current on this thread, checked against the runtime."""
        import glfw
        import moderngl

        low, high = self._gl_requirements()  # must be asked before xrCreateSession
        if not os.environ.get("DISPLAY"):
            raise ViewerError(
                "the OpenXR OpenGL session needs an X display (DISPLAY is not set); run under X or Xvfb, "
                f"or {_NO_RUNTIME_HINT}"
            )
        if not glfw.init():
            raise ViewerError(
                f"cannot initialise GLFW on DISPLAY={os.environ['DISPLAY']}; {_NO_RUNTIME_HINT}"
            )
        glfw.window_hint(glfw.VISIBLE, glfw.FALSE)
        glfw.window_hint(glfw.DOUBLEBUFFER, glfw.FALSE)
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        self.window = glfw.create_window(64, 64, "Holo headset", None, None)
        if not self.window:
            raise ViewerError("cannot create an OpenGL 3.3 context through GLX for the headset")
        glfw.make_context_current(self.window)
        glfw.swap_interval(0)  # the runtime paces frames, not the hidden window
        self.ctx = moderngl.create_context()
        major, minor = self.ctx.version_code // 100, self.ctx.version_code % 100 // 10  # 450: 4.5
        if (major, minor) < (low.major, low.minor):
            raise ViewerError(
                f"the OpenXR runtime needs OpenGL {low.major}.{low.minor} or newer; this context is "
                f"{self.ctx.info.get('GL_VERSION', f'{major}.{minor}')}"
            )
        logger.info(
            "OpenGL %s (%s); the runtime accepts %d.%d..%d.%d",
            self.ctx.info.get("GL_VERSION"), self.ctx.info.get("GL_RENDERER"), low.major, low.minor, high.major,
            high.minor,
        )  # fmt: skip

    def create_session(self) -> None:
        xr = self.xr
        from OpenGL import GLX

        # The context made current by GLFW: its display, drawable (the GLX window) and context.
        binding = xr.GraphicsBindingOpenGLXlibKHR(
            x_display=GLX.glXGetCurrentDisplay(),
            glx_drawable=GLX.glXGetCurrentDrawable(),
            glx_context=GLX.glXGetCurrentContext(),
        )
        self._binding = binding  # keep alive while the session exists
        self.session = xr.create_session(
            self.instance,
            xr.SessionCreateInfo(
                next=ctypes.cast(ctypes.pointer(binding), ctypes.c_void_p), system_id=self.system
            ),
        )
        spaces = set(xr.enumerate_reference_spaces(self.session))
        identity = xr.Posef()
        self.space = xr.create_reference_space(
            self.session, xr.ReferenceSpaceCreateInfo(xr.ReferenceSpaceType.LOCAL, identity)
        )
        self.view_space = xr.create_reference_space(
            self.session, xr.ReferenceSpaceCreateInfo(xr.ReferenceSpaceType.VIEW, identity)
        )
        if xr.ReferenceSpaceType.STAGE.value in spaces:
            self.stage = xr.create_reference_space(
                self.session, xr.ReferenceSpaceCreateInfo(xr.ReferenceSpaceType.STAGE, identity)
            )
        formats = list(xr.enumerate_swapchain_formats(self.session))
        fmt = next((f for f in _COLOR_FORMATS if f in formats), None)
        if fmt is None:
            raise ViewerError(
                f"the OpenXR runtime offers no 8-bit RGBA swapchain (formats {', '.join(hex(f) for f in formats)})"
            )
        for width, height in self.recommended:
            handle = xr.create_swapchain(
                self.session,
                xr.SwapchainCreateInfo(
                    usage_flags=xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT
                    | xr.SwapchainUsageFlags.SAMPLED_BIT,
                    format=fmt,
                    sample_count=1,
                    width=width,
                    height=height,
                    face_count=1,
                    array_size=1,
                    mip_count=1,
                ),
            )
            sc = _Swapchain(handle, width, height)
            self.swapchains.append(sc)  # before anything below can fail: close() destroys it
            sc.depth = self.ctx.depth_renderbuffer((width, height))
            for image in xr.enumerate_swapchain_images(handle, xr.SwapchainImageOpenGLKHR):
                color = self.ctx.external_texture(image.image, (width, height), 4, 0, "f1")
                sc.framebuffers.append(
                    self.ctx.framebuffer(color_attachments=[color], depth_attachment=sc.depth)
                )
        logger.info("swapchains: %d per eye, format 0x%x", len(self.swapchains[0].framebuffers), fmt)

    # -- events ----------------------------------------------------------------------------------------
    def poll_events(self) -> None:
        xr = self.xr
        while True:
            try:
                event = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            kind = xr.StructureType(event.type)
            if kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                changed = ctypes.cast(
                    ctypes.byref(event), ctypes.POINTER(xr.EventDataSessionStateChanged)
                ).contents
                self._on_state(xr.SessionState(changed.state))
            elif kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                logger.warning("the OpenXR runtime is going away; leaving the headset view")
                self.quit = True
            elif kind == xr.StructureType.EVENT_DATA_REFERENCE_SPACE_CHANGE_PENDING:
                self.eye_height_m = None  # recentred or the floor moved: measure again

    def _on_state(self, state: Any) -> None:
        xr = self.xr
        self.state_name = state.name
        logger.info("OpenXR session state: %s", state.name)
        if state == xr.SessionState.READY:
            xr.begin_session(self.session, xr.SessionBeginInfo(xr.ViewConfigurationType.PRIMARY_STEREO))
            self.running = True
        elif state == xr.SessionState.STOPPING:
            self.running = False
            xr.end_session(self.session)
        elif state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
            if state == xr.SessionState.LOSS_PENDING:
                logger.warning("the OpenXR session is being lost (headset disconnected?)")
            self.quit = True

    # -- frames ----------------------------------------------------------------------------------------
    def measure_eye_height(self, time_ns: int) -> float:
        """Height of LOCAL's origin above the floor: from STAGE when the runtime knows it, else 1.6 m."""
        xr = self.xr
        height, source = DEFAULT_EYE_HEIGHT_M, "assumed (the runtime has no STAGE space)"
        if self.stage is not None:
            loc = xr.locate_space(self.space, self.stage, time_ns)
            if loc.location_flags & xr.SPACE_LOCATION_POSITION_VALID_BIT:
                height, source = float(loc.pose.position.y), "from the runtime's STAGE space"
            else:
                source = "assumed (the STAGE space is not tracked yet)"
        logger.info("the scene's floor is %.2f m below the LOCAL origin, %s", height, source)
        return height

    def render_frame(
        self, renderer: Renderer, scene: Scene, time_ns: int, capture: _Capture | None
    ) -> tuple[Any, tuple[Any, ...]] | None:
        """Render both eyes; the projection layer (and the views it points to) or None without tracking."""
        xr = self.xr
        # The head first, right before the views, so the recorded pose matches what is drawn.
        head = xr.locate_space(self.view_space, self.space, time_ns) if capture is not None else None
        view_state, views = xr.locate_views(
            self.session, xr.ViewLocateInfo(xr.ViewConfigurationType.PRIMARY_STEREO, time_ns, self.space)
        )
        flags = view_state.view_state_flags
        if not (flags & xr.VIEW_STATE_ORIENTATION_VALID_BIT and flags & xr.VIEW_STATE_POSITION_VALID_BIT):
            return None  # no tracking: submit nothing (the runtime shows its own fallback)
        if self.eye_height_m is None:
            self.eye_height_m = self.measure_eye_height(time_ns)
        scene_from_space = np.eye(4)
        scene_from_space[1, 3] = self.eye_height_m
        visible = scene.snapshot()
        layer_views = tuple(xr.CompositionLayerProjectionView() for _ in views)
        images = []
        for view, sc, layer_view in zip(views, self.swapchains, layer_views, strict=True):
            index = xr.acquire_swapchain_image(sc.handle, xr.SwapchainImageAcquireInfo())
            xr.wait_swapchain_image(sc.handle, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
            fbo = sc.framebuffers[index]
            fbo.use()
            o, p, f = view.pose.orientation, view.pose.position, view.fov
            scene_from_eye = scene_from_space @ pose_matrix((o.x, o.y, o.z, o.w), (p.x, p.y, p.z))
            eye = Eye(
                view=np.linalg.inv(scene_from_eye).astype(np.float32),
                proj=perspective_from_fov(f.angle_left, f.angle_right, f.angle_up, f.angle_down),
                viewport=(0, 0, sc.width, sc.height),
            )
            renderer.render(visible, [eye])
            if capture is not None:
                pixels = fbo.read(components=3, alignment=1)
                images.append(np.frombuffer(pixels, np.uint8).reshape(sc.height, sc.width, 3)[::-1].copy())
            xr.release_swapchain_image(sc.handle, xr.SwapchainImageReleaseInfo())
            layer_view.pose = view.pose
            layer_view.fov = view.fov
            layer_view.sub_image.swapchain = sc.handle
            layer_view.sub_image.image_rect.offset[:] = [0, 0]
            layer_view.sub_image.image_rect.extent[:] = [sc.width, sc.height]
        if capture is not None:
            capture.write(self, time_ns, head, views, images)
        layer = xr.CompositionLayerProjection(space=self.space, views=layer_views)
        return layer, layer_views

    def close(self) -> None:
        xr = self.xr
        for sc in self.swapchains:
            for fbo in sc.framebuffers:
                fbo.release()  # the framebuffer object only: the textures belong to the runtime
            if sc.depth is not None:
                sc.depth.release()
            with contextlib.suppress(xr.XrException):
                xr.destroy_swapchain(sc.handle)
        self.swapchains.clear()
        for name in ("view_space", "stage", "space"):
            space = getattr(self, name)
            if space is not None:
                with contextlib.suppress(xr.XrException):
                    xr.destroy_space(space)
                setattr(self, name, None)
        if self.session is not None:
            with contextlib.suppress(xr.XrException):
                xr.destroy_session(self.session)
            self.session = None
        if self.instance is not None:
            with contextlib.suppress(xr.XrException):
                xr.destroy_instance(self.instance)
            self.instance = None
        # The GLFW window stays: destroying it crashed inside Mesa's GLX; process exit frees it.


class _Capture:
    """Eye images and one JSON line of poses per rendered frame, for checks and tests."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.log = (self.folder / "frames.jsonl").open("w", encoding="utf-8")
        except OSError as exc:
            raise ViewerError(
                f"cannot write the headset capture to {folder}: {exc.strerror or exc}"
            ) from None
        self.frame = 0

    def write(self, headset: _Headset, time_ns: int, head: Any, views: Any, images: list[np.ndarray]) -> None:
        from PIL import Image

        xr = headset.xr
        names = []
        for i, image in enumerate(images):
            name = f"eye{i}_{self.frame:04d}.png"
            try:
                Image.fromarray(image).save(self.folder / name)
            except OSError as exc:
                raise ViewerError(f"cannot write {self.folder / name}: {exc.strerror or exc}") from None
            names.append(name)
        valid = bool(
            head.location_flags & xr.SPACE_LOCATION_POSITION_VALID_BIT
            and head.location_flags & xr.SPACE_LOCATION_ORIENTATION_VALID_BIT
        )
        record = {
            "frame": self.frame,
            "display_time_ns": int(time_ns),
            "state": headset.state_name,
            "space": "LOCAL",
            "eye_height_m": headset.eye_height_m,
            "head": {**_pose(head.pose), "valid": valid},
            "views": [
                {
                    **_pose(v.pose),
                    "fov": [v.fov.angle_left, v.fov.angle_right, v.fov.angle_up, v.fov.angle_down],
                }
                for v in views
            ],
            "images": names,
        }
        self.log.write(json.dumps(record) + "\n")
        self.log.flush()
        self.frame += 1

    def close(self) -> None:
        self.log.close()


def _pose(pose: Any) -> dict[str, list[float]]:
    o, p = pose.orientation, pose.position
    return {"position": [p.x, p.y, p.z], "orientation": [o.x, o.y, o.z, o.w]}


def run_openxr(scene: Scene, args: argparse.Namespace) -> int:
    """Show the scene in the OpenXR runtime's headset until the session ends, Ctrl-C or N frames."""
    limit = getattr(args, "headset_frames", None)
    if limit is not None and limit < 1:
        raise ConfigError("--headset-frames must be at least 1")
    capture_dir = getattr(args, "headset_capture", None)
    xr = _import_xr()
    headset = _Headset(xr)
    capture = _Capture(capture_dir) if capture_dir else None
    try:
        headset.create_instance()
        headset.create_gl()
        headset.create_session()
        renderer = Renderer(headset.ctx)
        renderer.show_skeleton = not getattr(args, "no_skeleton", False)
        with _Stop() as stop:
            rendered, elapsed = _frame_loop(headset, renderer, scene, limit, capture, stop)
        renderer.release()
        if stop.interrupted:
            raise KeyboardInterrupt
    except (xr.exception.InstanceLostError, xr.exception.SessionLostError):
        raise ViewerError(
            "the OpenXR runtime went away during the session (its service stopped or the headset was unplugged)"
        ) from None
    except xr.XrException as exc:
        raise ViewerError(f"the OpenXR runtime failed: {str(exc).strip()} ({type(exc).__name__})") from None
    finally:
        if capture is not None:
            capture.close()
        headset.close()
    rate = f", {(rendered - 1) / elapsed:.1f} frames/s" if rendered > 1 and elapsed > 0 else ""
    size = " and ".join(sorted({f"{w}x{h}" for w, h in headset.recommended}))
    print(f"holo view: showed {rendered} frames on {headset.system_name} ({size} per eye{rate})")
    return 0


def _frame_loop(
    headset: _Headset,
    renderer: Renderer,
    scene: Scene,
    limit: int | None,
    capture: _Capture | None,
    stop: _Stop,
) -> tuple[int, float]:
    """Run frames until the session exits; (frames rendered, seconds from the first to the last)."""
    xr = headset.xr
    rendered = 0
    first_s = last_s = 0.0
    exit_deadline: float | None = None
    waiting_logged = False
    while not headset.quit:
        headset.poll_events()
        if headset.quit:
            break
        if stop.requested and exit_deadline is None:
            exit_deadline = time.monotonic() + _EXIT_TIMEOUT_S
            if headset.running:
                xr.request_exit_session(headset.session)
            else:
                break  # no session running: nothing to end
        if exit_deadline is not None and time.monotonic() > exit_deadline:
            logger.warning(
                "the OpenXR runtime did not end the session within %.0f s; leaving", _EXIT_TIMEOUT_S
            )
            break
        if not headset.running:
            if exit_deadline is not None and headset.state_name in ("IDLE", "EXITING"):
                break  # ended (STOPPING → end session → IDLE); EXITING may not follow on every runtime
            if not waiting_logged:
                logger.info("waiting for the headset to be ready (session state %s)", headset.state_name)
                waiting_logged = True
            time.sleep(0.02)
            continue
        frame_state = xr.wait_frame(headset.session)
        with contextlib.suppress(xr.FrameDiscarded):
            xr.begin_frame(headset.session)
        layers: list[Any] = []
        keep: Any = None
        if frame_state.should_render:
            counting = exit_deadline is None
            keep = headset.render_frame(renderer, scene, frame_state.predicted_display_time,
                                        capture if counting else None)  # fmt: skip
            if keep is not None:
                layers = [ctypes.byref(keep[0])]
                if counting:
                    rendered += 1
                    last_s = time.monotonic()
                    if rendered == 1:
                        first_s = last_s
        xr.end_frame(
            headset.session,
            xr.FrameEndInfo(
                display_time=frame_state.predicted_display_time,
                environment_blend_mode=headset.blend_mode,
                layers=layers,
            ),
        )
        if limit is not None and rendered >= limit and exit_deadline is None:
            logger.info("rendered %d frames; ending the OpenXR session", rendered)
            stop.requested = True
    return rendered, last_s - first_s

"""The renderer: moderngl point splats, floor grid, skeletons and a text overlay.

One code path for the desktop window, the offscreen snapshot (EGL) and the headset (OpenXR
swapchain images): the caller binds a framebuffer and passes a view and a projection per eye.

Points render as round splats whose size follows distance — each point covers the patch of surface
it stands for (about 1.8 times the cloud's point spacing, estimated per participant), so a person
looks solid at a metre and does not turn into dust when far. A fading participant is drawn with a
stable screen-door pattern (order-independent, no sorting).

Software GL (Mesa's llvmpipe) allocates and frees several megabytes of binning memory every frame.
With glibc's default trim threshold (128 KiB) the freed top of the heap goes back to the kernel each
time and the next frame page-faults it in again, zeroed: that halves the frame rate of a near,
screen-filling person. :func:`keep_frame_memory` raises the threshold once per process (64 MiB
stay mapped), measured by ``bench/viewer.py``. Setting it turns off glibc's sliding mmap threshold,
so that is fixed at 4 MiB (arrays below it come from the heap, as the sliding one would do).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from dataclasses import dataclass
from typing import Any, cast

import moderngl
import numpy as np

from holo.frame import POSE_BONES
from viewer.scene import Participant

__all__ = ["BACKGROUND", "GRID_TINT", "Eye", "Renderer", "keep_frame_memory"]

logger = logging.getLogger(__name__)

BACKGROUND = (0.07, 0.08, 0.10)
GRID_TINT = (0.25, 0.27, 0.3)  # the floor grid's lines (RGB, opaque)
SKELETON_TINT = (0.2, 0.95, 0.6, 1.0)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_FRAME_MEMORY_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 4 << 20
_kept = False


def keep_frame_memory() -> bool:
    """Keep up to 64 MiB of freed heap mapped instead of returning it to the kernel every frame
    (glibc only; elsewhere a no-op). True when the setting took effect."""
    global _kept
    if _kept or not sys.platform.startswith("linux"):
        return _kept
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _kept = bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FRAME_MEMORY_BYTES))
        _kept = _kept and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        _kept = False
    return _kept


SKELETON_VISIBLE = 0.3  # a bone is drawn when both its joints are more visible than this

_POINT_VS = """
#version 330
uniform mat4 mvp;         // proj * view * model, multiplied once per participant on the CPU
uniform vec4 depth_row;   // the third row of view * model: the point's eye-space z
uniform float size_m;
uniform float focal_px;
in vec3 in_pos;
in vec4 in_color;
out vec3 v_color;
out float v_size;
void main() {
    vec4 p = vec4(in_pos, 1.0);
    gl_Position = mvp * p;
    v_size = clamp(size_m * focal_px / max(-dot(depth_row, p), 0.05), 1.0, 48.0);
    gl_PointSize = v_size;
    v_color = in_color.rgb;
}
"""

_POINT_FS = """
#version 330
in vec3 v_color;
in float v_size;
out vec4 color;
void main() {
    if (v_size > 2.5) {  // round splats; tiny ones stay square (no visible difference, cheaper)
        vec2 c = gl_PointCoord * 2.0 - 1.0;
        if (dot(c, c) > 1.0) discard;
    }
    color = vec4(v_color, 1.0);
}
"""

# A participant whose nearest splat is at most SQUARE_SPLAT_MAX_PX wide is drawn with square splats:
# at 4 pixels a disc and a square differ by their corner pixels, and a shader that never reads
# gl_PointCoord spares llvmpipe the point-sprite set-up of every point (~12 % of a frame).
SQUARE_SPLAT_MAX_PX = 4.0
_SQUARE_FS = """
#version 330
in vec3 v_color;
in float v_size;
out vec4 color;
void main() {
    color = vec4(v_color, v_size > 0.0 ? 1.0 : 0.0);
}
"""

# Fading participants: a stable screen-door pattern drops a growing share of fragments. A separate
# program, because llvmpipe pays for the dither code even where it is not taken.
_FADING_FS = """
#version 330
uniform float opacity;
in vec3 v_color;
in float v_size;
out vec4 color;
void main() {
    vec2 c = gl_PointCoord * 2.0 - 1.0;
    if (v_size > 2.5 && dot(c, c) > 1.0) discard;
    float threshold = fract(52.9829189 * fract(dot(gl_FragCoord.xy, vec2(0.06711056, 0.00583715))));
    if (threshold > opacity) discard;
    color = vec4(v_color, 1.0);
}
"""

_LINE_VS = """
#version 330
uniform mat4 model;
uniform mat4 view;
uniform mat4 proj;
in vec3 in_pos;
void main() { gl_Position = proj * view * model * vec4(in_pos, 1.0); }
"""

_LINE_FS = """
#version 330
uniform vec4 tint;
out vec4 color;
void main() { color = tint; }
"""

_QUAD_VS = """
#version 330
in vec2 in_pos;
in vec2 in_uv;
out vec2 v_uv;
void main() { gl_Position = vec4(in_pos, 0.0, 1.0); v_uv = in_uv; }
"""

_QUAD_FS = """
#version 330
uniform sampler2D tex;
in vec2 v_uv;
out vec4 color;
void main() { color = texture(tex, v_uv); }
"""


@dataclass(frozen=True)
class Eye:
    """One view to render: matrices and the viewport (x, y, width, height) in the target framebuffer."""

    view: np.ndarray
    proj: np.ndarray
    viewport: tuple[int, int, int, int]


class _Gpu:
    """A participant's buffers on the GPU, refreshed when a new cloud arrives."""

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self.capacity = 0
        self.count = 0
        self.version = -1
        self.pos: moderngl.Buffer | None = None
        self.col: moderngl.Buffer | None = None
        self.vaos: dict[int, moderngl.VertexArray] = {}
        self.corners = np.zeros((8, 4))  # the cloud's bounding box, homogeneous

    def largest_splat_px(self, model_view: np.ndarray, size_m: float, focal_px: float) -> float:
        """An upper bound of the splat size (pixels): at the box corner nearest the eye."""
        nearest = float(np.max(self.corners @ model_view[2])) if self.count else -1.0
        return min(48.0, max(1.0, size_m * focal_px / max(-nearest, 0.05)))

    def upload(self, points: np.ndarray, colors: np.ndarray) -> None:
        n = len(points)
        if n > self.capacity:
            self.release()  # (new buffers: the vertex arrays are rebuilt on first use)
            self.capacity = max(n, 1024) * 5 // 4
            self.pos = self.ctx.buffer(reserve=self.capacity * 12, dynamic=True)
            self.col = self.ctx.buffer(reserve=self.capacity * 4, dynamic=True)
        if n:
            assert self.pos is not None and self.col is not None
            rgba = np.empty((n, 4), np.uint8)
            rgba[:, :3] = colors
            rgba[:, 3] = 255
            self.pos.write(np.ascontiguousarray(points, np.float32).tobytes())
            self.col.write(rgba.tobytes())
            # (column by column: numpy's axis-0 reduction of an N x 3 array is ~20x slower)
            lo = [points[:, i].min() for i in range(3)]
            hi = [points[:, i].max() for i in range(3)]
            box = np.array(np.meshgrid([lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]])).reshape(3, -1).T
            self.corners = np.c_[box, np.ones(8)]
        self.count = n

    def vao_for(self, program: moderngl.Program) -> moderngl.VertexArray:
        vao = self.vaos.get(id(program))
        if vao is None:
            assert self.pos is not None and self.col is not None
            vao = self.ctx.vertex_array(program, [(self.pos, "3f", "in_pos"), (self.col, "4f1", "in_color")])
            self.vaos[id(program)] = vao
        return vao

    def release(self) -> None:
        for vao in self.vaos.values():
            vao.release()
        self.vaos.clear()
        for obj in (self.pos, self.col):
            if obj is not None:
                obj.release()
        self.pos = self.col = None
        self.capacity = 0


def _u(program: moderngl.Program, name: str) -> moderngl.Uniform:
    return cast(moderngl.Uniform, program[name])


class Renderer:
    def __init__(self, ctx: moderngl.Context) -> None:
        keep_frame_memory()
        self.ctx = ctx
        self.points = ctx.program(vertex_shader=_POINT_VS, fragment_shader=_POINT_FS)
        self.square = ctx.program(vertex_shader=_POINT_VS, fragment_shader=_SQUARE_FS)
        self.fading = ctx.program(vertex_shader=_POINT_VS, fragment_shader=_FADING_FS)
        self.lines = ctx.program(vertex_shader=_LINE_VS, fragment_shader=_LINE_FS)
        self.quad = ctx.program(vertex_shader=_QUAD_VS, fragment_shader=_QUAD_FS)
        self._gpu: dict[str, _Gpu] = {}
        grid = []
        for i in np.arange(-5.0, 5.01, 0.5):
            grid += [(i, 0, -8), (i, 0, 2), (-5, 0, i - 3), (5, 0, i - 3)]
        self.grid_vbo = ctx.buffer(np.array(grid, np.float32).tobytes())
        self.grid_vao = ctx.vertex_array(self.lines, [(self.grid_vbo, "3f", "in_pos")])
        self.skel_vbo = ctx.buffer(reserve=len(POSE_BONES) * 2 * 12, dynamic=True)
        self.skel_vao = ctx.vertex_array(self.lines, [(self.skel_vbo, "3f", "in_pos")])
        self.overlay: moderngl.Texture | None = None
        self.overlay_vbo: moderngl.Buffer | None = None
        self.overlay_vao: moderngl.VertexArray | None = None
        self.show_skeleton = True
        self.show_grid = True

    # -- drawing ---------------------------------------------------------------------------------------
    def render(
        self, visible: list[tuple[Participant, float]], eyes: list[Eye], *, clear: bool = True
    ) -> None:
        ctx = self.ctx
        self._sync(visible)
        # Per participant, what does not depend on the eye: the model matrix and the skeleton's lines.
        draws = []
        for p, opacity in visible:
            gpu = self._gpu.get(p.name)
            if gpu is None or gpu.count == 0:
                continue
            model = p.model_matrix() @ p.world_from_camera
            skeleton = self._skeleton_lines(p, model) if self.show_skeleton else None
            draws.append((p, opacity, gpu, model, skeleton))
        ctx.enable(moderngl.DEPTH_TEST | moderngl.PROGRAM_POINT_SIZE)
        for eye in eyes:
            ctx.viewport = eye.viewport
            ctx.scissor = eye.viewport
            if clear:
                ctx.clear(*BACKGROUND, 1.0, depth=1.0, viewport=eye.viewport)
            ctx.scissor = None
            focal_px = eye.proj[1, 1] * eye.viewport[3] / 2
            self._set(self.lines, view=eye.view, proj=eye.proj)
            if self.show_grid:
                self._set(self.lines, model=np.eye(4, dtype=np.float32))
                _u(self.lines, "tint").value = (*GRID_TINT, 1.0)
                self.grid_vao.render(moderngl.LINES)
            for p, opacity, gpu, model, skeleton in draws:
                model_view = eye.view.astype(np.float64) @ model
                if opacity < 1.0:
                    program = self.fading
                elif gpu.largest_splat_px(model_view, p.point_size_m, focal_px) <= SQUARE_SPLAT_MAX_PX:
                    program = self.square
                else:
                    program = self.points
                self._set(program, mvp=eye.proj @ model_view)
                _u(program, "depth_row").value = tuple(float(v) for v in model_view[2])
                _u(program, "size_m").value = p.point_size_m
                _u(program, "focal_px").value = float(focal_px)
                if program is self.fading:
                    _u(program, "opacity").value = float(opacity)
                gpu.vao_for(program).render(moderngl.POINTS, vertices=gpu.count)
                if skeleton is not None:
                    self._draw_skeleton(*skeleton)
        ctx.disable(moderngl.DEPTH_TEST)

    @staticmethod
    def _skeleton_lines(p: Participant, model: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The skeleton's visible bones as line segments (2k x 3 float32) and their model matrix."""
        skel = p.cloud.skeleton if p.cloud is not None else None
        if skel is None:
            return None
        pairs = [
            (a, b)
            for a, b in POSE_BONES
            if skel.visibility[a] > SKELETON_VISIBLE and skel.visibility[b] > SKELETON_VISIBLE
        ]
        if not pairs:
            return None
        seg = np.asarray(skel.joints_m, np.float32)[np.array(pairs)].reshape(-1, 3)
        return seg, (model if skel.frame == "camera" else p.model_matrix())

    def _draw_skeleton(self, seg: np.ndarray, model: np.ndarray) -> None:
        self.skel_vbo.write(seg.tobytes())
        self._set(self.lines, model=model)
        _u(self.lines, "tint").value = SKELETON_TINT
        self.ctx.disable(moderngl.DEPTH_TEST)
        self.skel_vao.render(moderngl.LINES, vertices=len(seg))
        self.ctx.enable(moderngl.DEPTH_TEST)

    def draw_overlay(self, image_rgba: np.ndarray | None, viewport: tuple[int, int, int, int]) -> None:
        """Draw a text image in the top-left corner of ``viewport`` (pixels, 1:1)."""
        if image_rgba is None:
            return
        h, w = image_rgba.shape[:2]
        if self.overlay is None or self.overlay.size != (w, h):
            if self.overlay is not None:
                self.overlay.release()
            self.overlay = self.ctx.texture((w, h), 4)
        self.overlay.write(np.ascontiguousarray(image_rgba[::-1]).tobytes())
        _, _, vw, vh = viewport
        x0, x1 = -1.0, -1.0 + 2 * w / vw
        y1, y0 = 1.0, 1.0 - 2 * h / vh
        quad = np.array([[x0, y0, 0, 0], [x1, y0, 1, 0], [x0, y1, 0, 1], [x1, y1, 1, 1]], np.float32)
        if self.overlay_vbo is None:
            self.overlay_vbo = self.ctx.buffer(reserve=quad.nbytes, dynamic=True)
            self.overlay_vao = self.ctx.vertex_array(
                self.quad, [(self.overlay_vbo, "2f 2f", "in_pos", "in_uv")]
            )
        self.overlay_vbo.write(quad.tobytes())
        self.ctx.viewport = viewport
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self.overlay.use(0)
        assert self.overlay_vao is not None
        self.overlay_vao.render(moderngl.TRIANGLE_STRIP)
        self.ctx.disable(moderngl.BLEND)

    # -- helpers ---------------------------------------------------------------------------------------
    def _sync(self, visible: list[tuple[Participant, float]]) -> None:
        names = {p.name for p, _ in visible}
        for name in list(self._gpu):
            if name not in names:
                self._gpu.pop(name).release()
        for p, _ in visible:
            gpu = self._gpu.get(p.name)
            if gpu is None:
                gpu = self._gpu[p.name] = _Gpu(self.ctx)
            # Version and cloud read once, together: the points and colours uploaded are one cloud's,
            # and the version recorded is that cloud's. The renderer applies world_from_camera itself
            # (identity for a world-frame cloud), so the upload is always the cloud's own points.
            version, cloud = p.version, p.cloud
            if gpu.version != version:
                if cloud is None:
                    gpu.upload(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
                else:
                    gpu.upload(cloud.points_m, cloud.colors)
                gpu.version = version

    @staticmethod
    def _set(program: moderngl.Program, **mats: Any) -> None:
        for name, m in mats.items():
            _u(program, name).write(np.ascontiguousarray(np.asarray(m, np.float32).T).tobytes())

    def release(self) -> None:
        for gpu in self._gpu.values():
            gpu.release()
        self._gpu.clear()


def overlay_text(lines: list[str], *, scale: int = 1) -> np.ndarray | None:
    """The stats text as an RGBA image (PIL's built-in font on a translucent panel)."""
    if not lines:
        return None
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    width = max(int(font.getlength(line)) for line in lines) + 12
    height = 14 * len(lines) + 8
    img = Image.new("RGBA", (width, height), (0, 0, 0, 150))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((6, 4 + 14 * i), line, fill=(235, 240, 245, 255), font=font)
    if scale > 1:
        img = img.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    return np.asarray(img)

"""Pictures of motion over time: how much the head and the mouth move, the predicted head pose, the pauses.

Twenty latent numbers per frame say little when read; a plot shows at a glance where a take mumbles through
a pause, which of two takes sways more, or what a calm or smoothing edit changed. The motion is split by
speed as the editing nodes do (``motion_edit.split_by_speed``):

* head: the speed of the slow part (latent units per second);
* mouth: the strength of the fast part, an RMS over ``MOUTH_WINDOW_S`` (latent units);
* pose: the variance adapter's yaw, pitch and roll in degrees, for motions that carry them.

Pauses from ``voice_activity`` are shaded. Drawn with matplotlib's object API on an Agg canvas, so nothing
touches pyplot's global state or a display.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..audio.voice_activity import VoiceActivity
from ..errors import AniTalkerError, MotionError
from ..types import Motion
from .edit import HEAD_SPLIT_HZ, check_motion, split_by_speed

MOUTH_WINDOW_S = 0.2
"""Window of the mouth RMS: long enough to bridge one syllable's open-close, short enough to show a pause."""
MAX_SERIES = 8
"""More lines than this are unreadable in one panel; callers pick takes first."""
DPI = 100
ANGLES = ("yaw", "pitch", "roll")
_ANGLE_STYLES = ("-", "--", ":")
_PAUSE_COLOR = "#d9d9d9"


def _mouth_energy(fast: torch.Tensor, fps: float) -> np.ndarray:
    """(frames, dim) -> (frames,) RMS of the fast part over a centred window."""
    power = fast.pow(2).sum(-1).numpy()
    n = max(1, int(round(MOUTH_WINDOW_S * fps)))
    kernel = np.ones(n) / n
    padded = np.pad(power, (n // 2, n - 1 - n // 2), mode="edge")
    return np.sqrt(np.convolve(padded, kernel, mode="valid"))


def motion_series(motion: Motion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time (frames,) in seconds, head speed (takes, frames) and mouth energy (takes, frames)."""
    x = motion.latents.detach().cpu().double()
    slow, fast = split_by_speed(x, motion.fps)
    speed = torch.zeros(x.shape[:2], dtype=torch.float64)
    if motion.num_frames > 1:
        step = (slow[:, 1:] - slow[:, :-1]).norm(dim=-1) * motion.fps
        speed[:, 1:] = step
        speed[:, 0] = step[:, 0]
    mouth = np.stack([_mouth_energy(fast[t], motion.fps) for t in range(motion.num_takes)])
    return np.arange(motion.num_frames) / motion.fps, speed.numpy(), mouth


def _labels(named: Sequence[tuple[str, Motion]]) -> list[tuple[str, Motion, int]]:
    series = []
    for name, motion in named:
        for t in range(motion.num_takes):
            parts = [name] if name else []
            if motion.num_takes > 1:
                parts.append(f"take {t}")
            if len(motion.seeds) == motion.num_takes:
                parts.append(f"seed {motion.seeds[t]}")
            series.append((" ".join(parts) or "motion", motion, t))
    return series


def _pose(motion: Motion, take: int) -> np.ndarray:
    """One take's (frames, 3) yaw, pitch, roll in degrees (the Motion checked their shape when it was made)."""
    return motion.pose_deg[take].detach().cpu().double().numpy()


def motion_figure(named: Sequence[tuple[str, Motion]], activity: Optional[VoiceActivity] = None,
                  width: int = 900, height: int = 600):
    """A matplotlib Figure with the head, mouth and (where known) pose panels of every take of every motion.

    ``named``: (label, motion) pairs, e.g. [("raw", a), ("calmed", b)]; every take becomes one line.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise AniTalkerError("plotting motion needs matplotlib: pip install matplotlib") from exc
    if not named:
        raise MotionError("nothing to plot: connect at least one motion")
    for name, motion in named:
        check_motion(motion, f"the motion {name!r}" if name else "the motion")
    for value, what in ((width, "width"), (height, "height")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 64 <= value <= 8192:
            raise AniTalkerError(f"the plot {what} must be a whole number of pixels from 64 to 8192, got {value!r}")
    series = _labels(named)
    if len(series) > MAX_SERIES:
        raise MotionError(f"{len(series)} takes are too many lines for one plot (at most {MAX_SERIES}); pick takes "
                          "with Select Take first")
    posed = [(label, m, t) for label, m, t in series if m.pose_deg is not None]

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    rows = 3 if posed else 2
    axes = fig.subplots(rows, 1, sharex=True)
    head_ax, mouth_ax = axes[0], axes[1]
    colors = [f"C{i % 10}" for i in range(len(series))]
    cache = {id(m): motion_series(m) for _, m in named}
    for (label, motion, take), color in zip(series, colors):
        time, speed, mouth = cache[id(motion)]
        head_ax.plot(time, speed[take], color=color, lw=1.2, label=label)
        mouth_ax.plot(time, mouth[take], color=color, lw=1.2, label=label)
    head_ax.set_ylabel("head speed\n(slow part, /s)")
    mouth_ax.set_ylabel("mouth energy\n(fast part, RMS)")
    head_ax.set_title(f"motion over time: head below {HEAD_SPLIT_HZ:g} Hz, mouth above", fontsize="medium")
    if posed:
        pose_ax = axes[2]
        one = len(posed) == 1  # one take: a colour per angle; several: a colour per take, a style per angle
        for (label, motion, take), color in zip(series, colors):
            if motion.pose_deg is None:
                continue
            pose = _pose(motion, take)
            time = np.arange(pose.shape[0]) / motion.fps
            for i, (angle, style) in enumerate(zip(ANGLES, _ANGLE_STYLES)):
                pose_ax.plot(time, pose[:, i], color=f"C{i}" if one else color, ls="-" if one else style, lw=1.1,
                             label=angle if one else None)
        pose_ax.set_ylabel("head pose\n(degrees)")
        pose_ax.axhline(0, color="0.6", lw=0.6)
        if one:
            pose_ax.legend(loc="upper right", fontsize="x-small", ncol=3)
        else:
            from matplotlib.lines import Line2D

            styles = [Line2D([], [], color="0.3", ls=style) for style in _ANGLE_STYLES]
            pose_ax.legend(styles, ANGLES, loc="upper right", fontsize="x-small", ncol=3)
    for ax in axes:
        if activity is not None:
            for p in activity.pauses:
                ax.axvspan(p.start_s, p.end_s, color=_PAUSE_COLOR, zorder=0, lw=0)
        ax.grid(True, color="0.92", lw=0.6)
        ax.margins(x=0)
    head_ax.set_ylim(bottom=0)
    mouth_ax.set_ylim(bottom=0)
    axes[-1].set_xlabel("time (s)")
    handles, names = head_ax.get_legend_handles_labels()
    if activity is not None and activity.pauses:
        from matplotlib.patches import Patch

        handles.append(Patch(color=_PAUSE_COLOR))
        names.append(f"pause ({len(activity.pauses)})")
    if handles:
        head_ax.legend(handles, names, loc="upper right", fontsize="x-small", ncol=min(4, len(handles)))
    return fig


def figure_to_image(fig) -> torch.Tensor:
    """Draw a Figure on an Agg canvas -> ComfyUI IMAGE (1, H, W, 3) float32 in 0..1."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].astype(np.float32) / 255.0).unsqueeze(0).contiguous()


def plot_motion(named: Sequence[tuple[str, Motion]], activity: Optional[VoiceActivity] = None,
                width: int = 900, height: int = 600) -> torch.Tensor:
    """The motion figure as a ComfyUI IMAGE (1, height, width, 3)."""
    return figure_to_image(motion_figure(named, activity, width=width, height=height))


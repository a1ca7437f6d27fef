"""Looking at a motion instead of reading it: a plot over time, and a take's head pose as editable keyframes."""

from __future__ import annotations

from comfy_api.latest import io

from ..anitalker_core.audio.voice_activity import MIN_PAUSE_S, activity_for
from ..anitalker_core.motion import keyframes
from ..anitalker_core.motion.edit import check_motion
from ..anitalker_core.motion.plot import plot_motion
from . import progress as shown
from .types import CATEGORY_EDIT, Motion, audio_parts


class MotionPlot(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerMotionPlot", display_name="Motion Plot", category=CATEGORY_EDIT,
            description="Draws the motion over time: how much the head and the mouth move, the predicted head "
                        "pose (yaw, pitch, roll) where the generator has it, and the speech pauses shaded. Compare "
                        "takes, or a motion before and after an edit.",
            inputs=[Motion.Input("motion", tooltip="Every take becomes one line."),
                    Motion.Input("motion_b", optional=True,
                                 tooltip="A second motion to compare, e.g. the same take after Calm Silence."),
                    io.Audio.Input("audio", optional=True, tooltip="The speech: its pauses are shaded."),
                    io.Float.Input("min_pause_s", default=MIN_PAUSE_S, min=0.1, max=5.0, step=0.05,
                                   tooltip="Shortest silence (seconds) shaded as a pause."),
                    io.Int.Input("width", default=900, min=256, max=4096, step=8,
                                 tooltip="The picture's width in pixels."),
                    io.Int.Input("height", default=600, min=256, max=4096, step=8,
                                 tooltip="The picture's height in pixels.")],
            outputs=[io.Image.Output(display_name="image")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion, motion_b=None, audio=None, min_pause_s=MIN_PAUSE_S, width=900,
                height=600) -> io.NodeOutput:
        named = [("A", motion), ("B", motion_b)] if motion_b is not None else [("", motion)]
        activity = None
        if audio is not None:
            activity = activity_for(motion, *audio_parts(audio), min_pause_s=min_pause_s)
        image = plot_motion(named, activity, width=width, height=height)
        takes = sum(m.num_takes for _, m in named)
        text = f"{takes} take(s), {motion.num_frames} frames" + (f"; {activity.describe()}" if activity else "")
        return io.NodeOutput(image, ui=shown.preview_ui(image, text))


class MotionToKeyframes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerMotionToKeyframes", display_name="Motion To Keyframes",
            category=CATEGORY_EDIT,
            description="Writes a take's head pose, face location and scale (as the variance adapter predicted "
                        "them) as keyframes. Edit the text and feed it to Variance Control to re-use a good "
                        "take's head motion.",
            inputs=[Motion.Input("motion", tooltip="From a pose_only or full_control motion generator."),
                    io.Int.Input("take", default=0, min=0, max=63,
                                 tooltip="Which take to write when the sampler made several (0 = the first)."),
                    io.Float.Input("tolerance_deg", default=keyframes.KEY_TOLERANCE_DEG, min=0.05, max=20.0,
                                   step=0.05, tooltip="Largest gap (degrees) between the pose and the keyframes; "
                                                      "larger = fewer keys.")],
            outputs=[io.String.Output(display_name="keyframes")],
            is_output_node=True,  # runs on its own and shows the text on the node, ready to copy
        )

    @classmethod
    def execute(cls, motion, take=0, tolerance_deg=keyframes.KEY_TOLERANCE_DEG) -> io.NodeOutput:
        check_motion(motion)
        text = keyframes.motion_keyframes(motion, take, tolerance_deg=tolerance_deg)
        return io.NodeOutput(text, ui={"text": [text]})

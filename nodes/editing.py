"""Motion editing nodes (between the sampler or Motion Extract and Render Frames) and paste-back."""

from __future__ import annotations

import os

from comfy_api.latest import io

from ..anitalker_core.audio.voice_activity import MIN_PAUSE_S, activity_for
from ..anitalker_core.errors import MotionError, PortraitError
from ..anitalker_core.image.compare import side_by_side
from ..anitalker_core.image.paste_back import PasteOptions
from ..anitalker_core.motion import edit as motion_edit
from ..anitalker_core.motion.calm_silence import HEAD_KEPT, calm_silence
from ..anitalker_core.weights.files import resolve_inside
from ..anitalker_core.motion.files import load_motion, save_motion
from ..anitalker_core.stages import PasteBackImages
from . import progress as shown
from .types import (CATEGORY_EDIT, CATEGORY_LOADERS, CATEGORY_MOTION, CATEGORY_RENDER, MOTION_TIP, PORTRAIT_TIP,
                    SQUARE_PASTE, Motion, Portrait, audio_parts, frames_mask, optional_text, paste_back_inputs)

MOTION_SUBFOLDER = "anitalker_motion"
MOTION_SUFFIX = ".safetensors"


class MotionSmooth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerMotionSmooth", display_name="Motion Smooth", category=CATEGORY_EDIT,
            description="Calms frame-to-frame jitter while keeping lip motion. 0 leaves the motion unchanged.",
            inputs=[Motion.Input("motion", tooltip=MOTION_TIP),
                    io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.1,
                                   tooltip="0: off. 1: removes single-frame wobble, keeps speech. 2-3: softer "
                                           "mouth. Higher: dreamy, slow motion.")],
            outputs=[Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(cls, motion, strength=1.0) -> io.NodeOutput:
        return io.NodeOutput(motion_edit.smooth(motion, strength))


class MotionStrength(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerMotionStrength", display_name="Motion Strength", category=CATEGORY_EDIT,
            description="Scales how far the face moves away from the portrait's own pose and expression.",
            inputs=[Motion.Input("motion", tooltip=MOTION_TIP),
                    io.Float.Input("strength", default=1.0, min=0.0, max=3.0, step=0.05,
                                   tooltip="Below 1 calmer, above 1 livelier. 1 = unchanged."),
                    io.Float.Input("head", default=1.0, min=0.0, max=3.0, step=0.05,
                                   tooltip="Extra factor for slow motion (head turns and sways); 0.5 halves "
                                           "head shake without touching the lips."),
                    io.Float.Input("mouth", default=1.0, min=0.0, max=3.0, step=0.05,
                                   tooltip="Extra factor for fast motion (mouth, blinks).")],
            outputs=[Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(cls, motion, strength=1.0, head=1.0, mouth=1.0) -> io.NodeOutput:
        return io.NodeOutput(motion_edit.scale_strength(motion, head=strength * head, mouth=strength * mouth))


class MotionBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerMotionBlend", display_name="Motion Blend", category=CATEGORY_EDIT,
            description="Mixes two motions, e.g. two takes, or speech-driven mouth with a video's head motion.",
            inputs=[Motion.Input("motion_a", tooltip="The first motion (weight 0)."),
                    Motion.Input("motion_b", tooltip="The second motion (weight 1). Motions of different lengths "
                                                     "are cut to the shorter."),
                    io.Float.Input("weight", default=0.5, min=0.0, max=1.0, step=0.05,
                                   tooltip="0 = only A, 1 = only B."),
                    io.String.Input("curve", display_name="curve (optional)", default="", optional=True,
                                    tooltip="Optional per-frame weight in the keyframe syntax, like '0: 0; 50: 1; "
                                            "4s: 0.5' (frame or time, colon, weight); overrides weight. Values "
                                            "glide between the keys.")],
            outputs=[Motion.Output(display_name="motion"), io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, motion_a, motion_b, weight=0.5, curve="") -> io.NodeOutput:
        out = motion_edit.blend(motion_a, motion_b, optional_text(curve) or weight)
        info = out.note or f"{out.num_frames} frames blended"
        return io.NodeOutput(out, info, ui={"text": [info]})


class SelectTake(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerSelectTake", display_name="Select Take", category=CATEGORY_EDIT,
            description="Keeps one take of a motion that holds several (the sampler's takes input).",
            inputs=[Motion.Input("motion", tooltip=MOTION_TIP),
                    io.Int.Input("index", display_name="take (0 = first)", default=0, min=0, max=63,
                                 tooltip="0 = the first take (the sampler's seed), 1 = the second (seed + 1), ...")],
            outputs=[Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(cls, motion, index=0) -> io.NodeOutput:
        return io.NodeOutput(motion_edit.select_take(motion, index))


def _motion_dir() -> str:
    import folder_paths

    return os.path.join(folder_paths.get_output_directory(), MOTION_SUBFOLDER)


def _saved_motions() -> list[str]:
    """Motion files under output/anitalker_motion, as names relative to it (subfolders included)."""
    root = _motion_dir()
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/") for f in files
                  if f.endswith(MOTION_SUFFIX)]
    return sorted(found)


class SaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerSaveMotion", display_name="Save Motion", category=CATEGORY_MOTION,
            description=f"Saves the motion to output/{MOTION_SUBFOLDER} so a good take can be re-rendered on "
                        "other portraits with Load Motion.",
            inputs=[Motion.Input("motion", tooltip=MOTION_TIP),
                    io.String.Input("filename_prefix", default="anitalker_motion",
                                    tooltip=f"The file output/{MOTION_SUBFOLDER}/<prefix>_<counter>.safetensors.")],
            outputs=[io.String.Output(display_name="path")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion, filename_prefix="anitalker_motion") -> io.NodeOutput:
        import folder_paths

        # ComfyUI's own naming (prefix_00001_, %date% patterns, subfolders, nothing outside the output folder)
        folder, name, counter, _, _ = folder_paths.get_save_image_path(
            os.path.join(MOTION_SUBFOLDER, filename_prefix or "anitalker_motion"), folder_paths.get_output_directory())
        os.makedirs(folder, exist_ok=True)
        path = save_motion(motion, os.path.join(folder, f"{name}_{counter:05}_{MOTION_SUFFIX}"))
        return io.NodeOutput(str(path), ui={"text": [f"saved {path.name}"]})


class LoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = _saved_motions()
        return io.Schema(
            node_id="AniTalkerLoadMotion", display_name="Load Motion", category=CATEGORY_LOADERS,
            description="Loads a motion saved by Save Motion, to render a good take again, on this portrait or "
                        "another, or to edit it further.",
            inputs=[io.Combo.Input("motion_file", options=files or ["(no saved motions yet)"],
                                   tooltip=f"Files saved by Save Motion in output/{MOTION_SUBFOLDER}.")],
            outputs=[Motion.Output(display_name="motion"), io.Int.Output(display_name="frame_count")],
        )

    @classmethod
    def execute(cls, motion_file) -> io.NodeOutput:
        if not str(motion_file).endswith(MOTION_SUFFIX):
            raise MotionError(f"motion file {motion_file!r} must be a {MOTION_SUFFIX} file name from the list")
        motion = load_motion(resolve_inside(_motion_dir(), motion_file))
        return io.NodeOutput(motion, motion.num_frames)


class PasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerPasteBack", display_name="Paste Back", category=CATEGORY_RENDER,
            description="Puts the animated head back into the original picture at full resolution: a feathered "
                        "square by default, as in the first release; with mask head and color_match on, a soft "
                        "edge around the head in the picture's colours, without a visible seam. Upscale the "
                        "frames first for sharper results. For long clips use Render Video, which pastes while it "
                        "encodes.",
            inputs=[io.Image.Input("original", tooltip="The image given to Load Portrait."),
                    io.Image.Input("frames", tooltip="Rendered (optionally upscaled) frames."),
                    Portrait.Input("portrait", tooltip=PORTRAIT_TIP),
                    *paste_back_inputs(SQUARE_PASTE, added=("color_match", "mask"))],
            outputs=[io.Image.Output(display_name="images"),
                     io.Mask.Output(display_name="matte",
                                    tooltip="The mask each frame is pasted through (1 = the animated head, 0 = the "
                                            "picture as it was), at the picture's size, the same for every frame.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, original, frames, portrait, feather=SQUARE_PASTE.feather, color_match=SQUARE_PASTE.color_match,
                mask=SQUARE_PASTE.mask) -> io.NodeOutput:
        if portrait.crop is None:
            raise PortraitError("this portrait has no crop box; load it with AniTalker Load Portrait")
        stage = PasteBackImages(original, frames, portrait.crop, PasteOptions(feather, mask, color_match))
        run = shown.estimated(stage, cls)
        images = stage.run(shown.progress(frames.shape[0]))
        info = f"{images.shape[0]} frames of {images.shape[2]}x{images.shape[1]}\n{run.summary()}"
        return io.NodeOutput(images, frames_mask(stage.compositor.matte(), images.shape[0]), ui={"text": [info]})


class SideBySide(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerSideBySide", display_name="Side by Side", category=CATEGORY_RENDER,
            description="Places two frame sequences next to each other to compare takes or edits.",
            inputs=[io.Image.Input("left", tooltip="Frames shown on the left."),
                    io.Image.Input("right", tooltip="Frames shown on the right, scaled to the left's height when "
                                                   "it differs. The longer side is cut to the shorter.")],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, left, right) -> io.NodeOutput:
        images, note = side_by_side(left, right)
        return io.NodeOutput(images, ui={"text": [note]} if note else None)


class CalmSilence(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerMotionCalmSilence", display_name="Calm Silence", category=CATEGORY_EDIT,
            description="Finds the pauses in the speech and, there, lets the mouth settle and the head hold still, "
                        "so the face looks like it is listening instead of mumbling. Speech is left untouched.",
            inputs=[Motion.Input("motion", tooltip=MOTION_TIP),
                    io.Audio.Input("audio", tooltip="The speech that drove the motion (pauses are found in it)."),
                    io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.05,
                                   tooltip="0: unchanged. 1: mouth fully at rest and head held in pauses."),
                    io.Float.Input("min_pause_s", default=MIN_PAUSE_S, min=0.1, max=5.0, step=0.05,
                                   tooltip="Shortest silence (seconds) that counts as a pause; shorter gaps "
                                           "between words stay speech."),
                    io.Float.Input("head", default=HEAD_KEPT, min=0.0, max=1.0, step=0.05,
                                   tooltip="How much of the head's own motion is kept in pauses: 0 holds it "
                                           "still, 1 leaves it as generated.")],
            outputs=[Motion.Output(display_name="motion"), io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, motion, audio, strength=1.0, min_pause_s=MIN_PAUSE_S, head=HEAD_KEPT) -> io.NodeOutput:
        activity = activity_for(motion, *audio_parts(audio), min_pause_s=min_pause_s)
        out = calm_silence(motion, activity, strength=strength, head=head)
        return io.NodeOutput(out, out.note, ui={"text": [out.note]})

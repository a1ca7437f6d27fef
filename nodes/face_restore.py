"""Face Restore: an IMAGE batch of head crops through a face-restoration model, for the IMAGE path (Render Frames ->
Face Restore -> Paste Back) and for any other pack's face frames."""

from __future__ import annotations

from comfy_api.latest import io

from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.image.face_restore import FaceRestorer, RestoreOptions
from ..anitalker_core.stages import FaceRestoreImages
from . import model_handle as models
from . import progress as shown
from .types import CATEGORY_RENDER, FACE_MODELS, RESTORE, restore_inputs


class FaceRestore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerFaceRestore", display_name="Face Restore", category=CATEGORY_RENDER,
            description="Restores the faces of square head crops (Render Frames' 256x256 frames, or another pack's "
                        "face frames) with a face-restoration model: each becomes a sharp face at the model's size "
                        "(512x512 for GFPGAN), batch by batch. Feed the result to Paste Back. ComfyUI's Upscale "
                        "Image (using Model) runs such models like upscalers and gives grey noise.",
            inputs=[io.Image.Input("images", tooltip="Square face crops, e.g. from Render Frames."),
                    io.UpscaleModel.Input("face_model", tooltip=f"{FACE_MODELS}."),
                    *restore_inputs()],
            outputs=[io.Image.Output(display_name="images")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, images, face_model, restore_strength=RESTORE.strength,
                codeformer_fidelity=RESTORE.fidelity) -> io.NodeOutput:
        options = RestoreOptions(restore_strength, codeformer_fidelity).check()
        device = models.execution_device("auto")
        try:
            restorer = models.upscaler(face_model, device, "face_model")
            if not isinstance(restorer, FaceRestorer):
                raise AniTalkerError(f"face_model is an upscale model ({face_model.architecture.name}, "
                                     f"{face_model.scale}x), not a face-restoration model; load GFPGANv1.4.pth "
                                     "(or RestoreFormer, CodeFormer), or use Upscale Image (using Model) for it")
            stage = FaceRestoreImages(restorer.with_options(options), images, device)
            run = shown.estimated(stage, cls)
            bar = shown.progress(images.shape[0])
            faces = stage.run(bar, preview=bar.preview)
        finally:
            models.release_upscaler(face_model)
        info = f"{faces.shape[0]} faces of {faces.shape[2]}x{faces.shape[1]}\n{run.summary()}"
        return io.NodeOutput(faces, ui={"text": [info]})

"""Loader nodes: the stage-1 renderer, the stage-2 motion generator and the audio encoder."""

from __future__ import annotations

from comfy_api.latest import io

from ..anitalker_core.audio.features import HubertFeatures, MfccFeatures
from ..anitalker_core.device_policy import (DEVICE_CHOICES, PRECISION_CHOICES, describe, keep_freed_memory,
                                            render_precision)
from ..anitalker_core.models.checkpoints import load_stage1, load_stage2
from ..anitalker_core.weights.files import HUBERT_DIR, STAGE1, STAGE2
from . import folders
from . import model_handle as models
from .types import CATEGORY_LOADERS, AudioEncoder, Generator, Renderer

MFCC_CHOICE = "mfcc (built in, no download)"

DEVICE_TIP = "auto: the GPU ComfyUI uses (CPU if none). cpu works everywhere but renders about 2 frames per second."
PRECISION_TIP = ("auto: fp16 on a GPU (about 1.3x faster than fp32, mean error near 1/255 per pixel), bf16 on a CPU "
                 "with bf16 instructions (AVX512-BF16/AMX: about 1.7x faster, the same error), else fp32. bf16 on a "
                 "GPU is as fast as fp16 but less accurate. The choice is shown on the node.")


class LoadRenderer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerLoadRenderer",
            display_name="Load Renderer",
            category=CATEGORY_LOADERS,
            description="Loads stage1.ckpt (AniTalker stage 1): the motion encoder and warp renderer that turn "
                        "motion codes into frames.",
            inputs=[
                io.Combo.Input("ckpt_name", options=folders.weight_files("stage1") or [STAGE1],
                               tooltip=f"The stage-1 file ({STAGE1}) in ComfyUI/models/anitalker."),
                io.Combo.Input("device", options=list(DEVICE_CHOICES), default="auto", tooltip=DEVICE_TIP),
                io.Combo.Input("precision", options=list(PRECISION_CHOICES), default="auto", tooltip=PRECISION_TIP),
            ],
            outputs=[Renderer.Output(display_name="renderer")],
        )

    @classmethod
    def execute(cls, ckpt_name: str, device: str = "auto", precision: str = "auto") -> io.NodeOutput:
        path = folders.find_model(ckpt_name, "stage-1 renderer")
        dev = models.execution_device(device)
        if dev.type == "cpu":
            keep_freed_memory()
        chosen = render_precision(precision, dev)
        model = load_stage1(path, device="cpu", precision=chosen.name)
        info = f"{ckpt_name}: {describe(dev, chosen)}"
        return io.NodeOutput(models.ModelHandle(model, dev, info=info), ui={"text": [info]})


class LoadMotionGenerator(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerLoadMotionGenerator",
            display_name="Load Motion Generator",
            category=CATEGORY_LOADERS,
            description="Loads an AniTalker stage-2 diffusion motion generator; which of the five variants it is "
                        "is detected from the file and shown on the node. *_hubert files need the HuBERT audio "
                        "encoder, *_mfcc files MFCC.",
            inputs=[
                io.Combo.Input("ckpt_name", options=folders.weight_files("stage2") or [STAGE2["hubert_audio_only"]],
                               tooltip="audio_only: lips and head from speech. pose_only: you can set the head "
                                       "pose. full_control: pose, face location and face scale."),
                io.Combo.Input("device", options=list(DEVICE_CHOICES), default="auto",
                               tooltip=DEVICE_TIP + " The sampler always runs in fp32: it is cheap next to "
                                                    "rendering, and exact."),
            ],
            outputs=[Generator.Output(display_name="generator"), io.String.Output(display_name="variant")],
        )

    @classmethod
    def execute(cls, ckpt_name: str, device: str = "auto") -> io.NodeOutput:
        path = folders.find_model(ckpt_name, "stage-2 motion generator")
        dev = models.execution_device(device)
        model = load_stage2(path, device="cpu")
        return io.NodeOutput(models.ModelHandle(model, dev, info=model.variant), model.variant,
                             ui={"text": [f"variant: {model.variant}"]})


class LoadAudioEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerLoadAudioEncoder",
            display_name="Load Audio Encoder",
            category=CATEGORY_LOADERS,
            description="HuBERT (chinese-hubert-large folder in models/anitalker) for *_hubert motion generators, "
                        "or the built-in MFCC features for *_mfcc ones.",
            inputs=[
                io.Combo.Input("encoder", options=folders.hubert_folders() + [MFCC_CHOICE],
                               tooltip=f"A HuBERT folder such as {HUBERT_DIR}, or MFCC (no weights needed)."),
                io.Combo.Input("device", options=list(DEVICE_CHOICES), default="auto", tooltip=DEVICE_TIP),
            ],
            outputs=[AudioEncoder.Output(display_name="audio_encoder")],
        )

    @classmethod
    def execute(cls, encoder: str, device: str = "auto") -> io.NodeOutput:
        if encoder == MFCC_CHOICE:
            return io.NodeOutput(MfccFeatures())
        path = folders.find_model(encoder, "HuBERT audio encoder folder")
        return io.NodeOutput(HubertFeatures(path, device=models.execution_device(device)))

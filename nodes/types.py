"""The pack's socket types and menu folders. Values are plain core records (or model handles), so nodes stay thin."""

from comfy_api.latest import io

Renderer = io.Custom("ANITALKER_RENDERER")
Generator = io.Custom("ANITALKER_GENERATOR")
AudioEncoder = io.Custom("ANITALKER_AUDIO_ENCODER")
Portrait = io.Custom("ANITALKER_PORTRAIT")
AudioFeatures = io.Custom("ANITALKER_AUDIO_FEATURES")
Control = io.Custom("ANITALKER_CONTROL")
Motion = io.Custom("ANITALKER_MOTION")

CATEGORY = "AniTalker"
"""The pack's menu folder; every node sits in one of the subfolders below."""
CATEGORY_LOADERS = "AniTalker/loaders"
CATEGORY_MOTION = "AniTalker/motion"
CATEGORY_EDIT = "AniTalker/edit"
CATEGORY_RENDER = "AniTalker/render"

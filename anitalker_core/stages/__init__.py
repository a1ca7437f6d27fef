"""Each long stage of a run as one object: ``estimate()`` times a short warm-up at the run's own sizes and
returns its ``Step`` (time and memory); ``run()`` then does the work, going on from that warm-up, so nothing is
computed twice. ``run_estimate`` adds steps up against the memory available and refuses what cannot fit."""

from .estimate import Need, Part, RunEstimate, Step, run_estimate
from .features import SpeechFeatures
from .frames import FrameRender
from .paste import PasteBackImages
from .restore import FaceRestoreImages
from .sampling import MotionSampling, sampling_step
from .video import VideoWrite

__all__ = ["Need", "Part", "RunEstimate", "Step", "run_estimate", "SpeechFeatures", "MotionSampling",
           "sampling_step", "FrameRender", "VideoWrite", "PasteBackImages", "FaceRestoreImages"]

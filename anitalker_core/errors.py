"""Exceptions the pack raises for bad input.

Every error a user can cause is an ``AniTalkerError`` whose message says what was wrong and what to do,
so ComfyUI can show it in the UI and keep running.
"""

from __future__ import annotations


class AniTalkerError(ValueError):
    """A user-facing, actionable error (bad input, wrong file, missing weights)."""


class CheckpointError(AniTalkerError):
    """A weight file is missing, unsafe, truncated or of the wrong kind."""


class MissingWeightsError(CheckpointError):
    """Weight files are absent and could not be downloaded."""


class AudioError(AniTalkerError):
    """The audio input cannot drive an animation (empty, too short, non-finite, undecodable)."""


class PortraitError(AniTalkerError):
    """The portrait input cannot be used (no face, wrong shape)."""


class MotionError(AniTalkerError):
    """A motion sequence is empty or does not fit the renderer it is given to."""


class ControlError(AniTalkerError):
    """Pose/location/scale controls, keyframes or curves cannot be parsed."""


class StepCountError(AniTalkerError):
    """A number of sampling steps that no even stride over the training steps gives."""


class ResourceError(AniTalkerError):
    """A run would need more memory than the machine has available; the message says what to change."""
class ManifestError(AniTalkerError):
    """A batch manifest cannot be run as written (unknown column, two rows writing one file, unreadable file)."""


class Interrupted(Exception):
    """The user cancelled long work; raised from a progress callback."""

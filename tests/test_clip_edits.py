"""Windows of frames and rectangles of pixels taken from a clip the way video editors (and ComfyUI) take them, and
the encodings a video can be written in."""

from __future__ import annotations

import numpy as np
import pytest

from anitalker_core.errors import AniTalkerError
from anitalker_core.video.clip_edits import Crop, even_crop, frame_window
from anitalker_core.video.encoding import VideoEncoding


@pytest.mark.parametrize("start, duration, strict, expected", [
    (None, None, False, (0, 10)),
    (0.0, 0.0, False, (0, 10)),  # duration 0: to the end
    (0.08, 0.12, False, (2, 3)),  # frames shown at 0.08, 0.12, 0.16
    (0.09, 0.1, False, (3, 2)),  # a start between frames begins with the next one
    (-0.12, 0.0, False, (7, 3)),  # from the end
    (-5.0, 0.08, False, (0, 2)),  # before the start: from the first frame
    (0.3, 0.5, False, (8, 2)),  # runs past the end: what there is
    (0.3, 0.5, True, None),  # ... unless the duration is strict
    (0.4, 0.0, False, None),  # at the end: nothing
    (0.2, -1.0, False, None),
])
def test_frame_window_counts_frames_by_their_times(start, duration, strict, expected):
    assert frame_window(10, 25, start, duration, strict) == expected


def test_even_crop_clamps_and_aligns_like_4_2_0_video_needs():
    assert even_crop(101, 51, 301, 201, 684, 684) == Crop(100, 50, 300, 200)
    assert even_crop(600, 600, 500, 500, 684, 684) == Crop(600, 600, 84, 84)  # clamped into the frame
    assert even_crop(0, 0, 684, 684, 684, 684) is None  # the whole frame
    assert even_crop(10, 10, 0, 5, 684, 684) is None  # empty
    samples = np.arange(2 * 6 * 8 * 3, dtype=np.uint16).reshape(2, 6, 8, 3)
    assert np.array_equal(Crop(2, 2, 4, 2)(samples), samples[:, 2:4, 2:6])


def test_encodings_resolve_auto_like_comfyui_and_refuse_what_cannot_be_written():
    assert VideoEncoding.requested("clip.mp4") == VideoEncoding("mp4", "h264", 8)
    assert VideoEncoding.requested("clip.mkv").container == "mkv"
    assert VideoEncoding.requested("clip.webm") == VideoEncoding("webm", "av1", 8)
    assert VideoEncoding.requested(None, "auto", "av1", 10, 25, "fast", "auto").samples == "uint16"
    assert VideoEncoding("mp4", "h264", crf=23, preset="ultrafast").encoder_options() == {"crf": "23",
                                                                                          "preset": "ultrafast"}
    assert VideoEncoding("webm", "av1", crf=None, preset="ultrafast").encoder_options() == {"crf": "30"}
    for wrong in ({"container": "avi"}, {"codec": "hevc"}, {"container": "webm", "codec": "h264"},
                  {"bit_depth": 12}, {"color_space": "HDR PQ"}, {"crf": 80}, {"preset": 3}):
        with pytest.raises(AniTalkerError):
            VideoEncoding(**wrong).check()

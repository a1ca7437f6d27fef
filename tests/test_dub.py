"""Dubbing footage: the footage read in any order, the face followed through a moving shot, the dub's motion and
sound, and the head pasted where the face is, frame by frame, nothing else touched."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import anitalker_core.stages.footage as footage_stage
import anitalker_core.video.video_render as video_render
from anitalker_core.audio.tracks import dub_track, follow_order
from anitalker_core.errors import AniTalkerError, MotionError, PortraitError
from anitalker_core.image.face_track import FollowOptions, track_face
from anitalker_core.motion.dub import DubOptions, dub_latents, footage_order, resample_latents
from anitalker_core import pipeline
from anitalker_core.options import ClipOptions
from anitalker_core.stages import VideoWrite
from anitalker_core.types import Motion
from anitalker_core.video.footage import FootageFile, FootageFrames
from tests.support import golden
from tests.support.moving_face import write_shot
from tests.support.says import says

FPS = 25


def test_the_footage_order_plays_forward_and_back_loops_or_holds():
    assert footage_order(4, 10, "pingpong").tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert footage_order(4, 6, "loop").tolist() == [0, 1, 2, 3, 0, 1]
    assert footage_order(4, 6, "hold").tolist() == [0, 1, 2, 3, 3, 3]
    assert footage_order(5, 3, "pingpong").tolist() == [0, 1, 2]  # footage longer than needed: its start
    assert footage_order(1, 3, "pingpong").tolist() == [0, 0, 0]
    with pytest.raises(MotionError, match="pingpong, loop, hold"):
        footage_order(4, 6, "bounce")


def test_speech_motion_is_resampled_to_the_footages_rate():
    t = torch.arange(25, dtype=torch.float64)[:, None]
    latents = torch.cat([t, 2 * t], dim=1)  # linear in time: resampling must keep the line
    at30 = resample_latents(latents, 25, 30, 30)
    assert torch.allclose(at30[:29, 0], torch.arange(29, dtype=torch.float64) * 25 / 30)
    assert torch.allclose(at30[:, 1], 2 * at30[:, 0]) and at30[-1, 0] == 24  # past the end the last frame holds


def test_the_dub_keeps_the_footages_head_and_takes_the_speechs_mouth():
    fps, frames = 30.0, 120
    t = torch.arange(frames, dtype=torch.float64) / fps
    head = torch.sin(2 * math.pi * 0.2 * t)[:, None].repeat(1, 4)  # slow: a head turn
    old_mouth = 0.3 * torch.sin(2 * math.pi * 6 * t)[:, None].repeat(1, 4)
    new_mouth = 0.3 * torch.sin(2 * math.pi * 5 * t + 1)[:, None].repeat(1, 4)
    footage, speech = head + old_mouth, 0.5 + new_mouth  # the speech's own head pose is left out
    order = np.arange(frames)
    dubbed = dub_latents(footage, speech, order, fps, frames)
    inner = slice(20, -20)  # away from the filter's ends
    assert float((dubbed - (head + new_mouth))[inner].abs().max()) < 0.05
    calmer = dub_latents(footage, speech, order, fps, frames, head=0.0, mouth=0.5)
    assert float((calmer - (head.mean() + 0.5 * new_mouth))[inner].abs().max()) < 0.05
    eyes = torch.tensor([1.0, 0.0, 0.0, 0.0])  # number 0 moves the eyes only
    blinking = dub_latents(footage, speech, order, fps, frames, eyes, blinks="footage")
    assert float((blinking[:, 0] - footage[:, 0])[inner].abs().max()) < 0.05  # the footage's own blinks
    assert float((blinking[:, 1] - (head + new_mouth)[:, 1])[inner].abs().max()) < 0.05
    later = dub_latents(footage, speech, order, fps, 60)  # the speech ends at frame 60: the footage's own after
    assert torch.allclose(later[60:], footage[60:].to(later), atol=1e-12)


def test_the_footages_sound_follows_its_frames_and_goes_under_the_speech():
    rate, fps = 250, 25  # 10 samples a frame
    own = torch.arange(50, dtype=torch.float32)[None] / 100  # five frames of a ramp
    order = footage_order(5, 9, "pingpong")
    followed = follow_order((own, rate), order, fps)[0]
    assert followed[40:50].tolist() == own[0, 40:50].tolist()  # frame 4 forward
    assert followed[50:90].tolist() == own[0, :40].flip(0).tolist()  # frames 3..0 backward: the sound reversed
    speech = torch.full((1, 90), 0.1)
    (mixed, mixed_rate) = dub_track((speech, rate), (own, rate), order, fps, talking=9, level=0.5)
    assert mixed_rate == rate and torch.allclose(mixed[0], 0.1 + 0.5 * followed)
    (replaced, _) = dub_track((speech, rate), (own, rate), order, fps, talking=9, level=0.0)
    assert torch.equal(replaced[0], speech[0])
    (going_on, _) = dub_track((speech[:, :30], rate), (own, rate), np.arange(5), fps, talking=3, level=0.0)
    assert torch.equal(going_on[0, 30:], own[0, 30:]) and torch.equal(going_on[0, :30], speech[0, :30])


@pytest.fixture(scope="module")
def shot30(tmp_path_factory):
    return write_shot(tmp_path_factory.mktemp("shot") / "shot.mp4", fps=Fraction(30), frames=24, tone_hz=440)


def test_footage_is_read_in_any_order_at_its_size_rate_and_sound(shot30):
    footage = FootageFile(shot30.path)
    assert (footage.width, footage.height, footage.fps, footage.frame_count) == (480, 270, 30, 24)
    forward = footage.frames(list(range(24)))
    backward = footage.frames(list(range(23, -1, -1)))
    assert np.array_equal(backward[::-1], forward)
    assert footage.frames([5], max_side=240).shape == (1, 136, 240, 3)
    wave, rate = footage.audio()
    assert rate == 48000 and abs(wave.shape[-1] - 24 / 30 * 48000) < 1100  # AAC's priming, at most a frame
    window = FootageFile(shot30.path, start_s=0.2, duration_s=0.3)
    assert window.frame_count == 9 and np.array_equal(window.frames([0])[0], forward[6])


def test_a_variable_frame_rate_file_shows_each_frame_at_its_time(tmp_path):
    path = tmp_path / "vfr.mkv"
    times = [0.0, 0.04, 0.2, 0.24]  # a frame held for 0.16 s: four frames at 25 fps
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "0"}
        for k, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * k + 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    footage = FootageFile(path)
    assert footage.fps == 25 and footage.frame_count == 7
    shown = [int(round((f.mean() - 20) / 40)) for f in footage.frames(list(range(7)))]
    assert shown == [0, 1, 1, 1, 1, 2, 3]


def test_a_file_without_video_and_an_empty_window_are_clear_errors(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.float32), format="fltp", layout="mono")
        chunk.sample_rate = 16000
        for packet in [*stream.encode(chunk), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(AniTalkerError, match="no video stream"):
        FootageFile(path)
    with pytest.raises(AniTalkerError, match="does not exist"):
        FootageFile(tmp_path / "nothing.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(AniTalkerError, match="could not be read as a video"):
        FootageFile(tmp_path / "text.mp4")
    with pytest.raises(AniTalkerError, match="no frames"):
        FootageFrames(torch.zeros(0, 8, 8, 3), 25)


def tracked(shot, **options):
    footage = FootageFile(shot.path)
    return track_face(lambda indices, side: footage.frames(indices, side), footage.frame_count, footage.width,
                      footage.height, float(footage.fps), **options)


def test_the_face_is_followed_through_the_shot(shot30):
    track = tracked(shot30)
    assert track.present.all() and track.frame_count == 24
    for i in range(24):
        cx, cy, side = shot30.face(i)
        assert math.hypot(track.faces[i, 0] - cx, track.faces[i, 1] - cy) < 0.2 * side, i
        assert abs(track.faces[i, 2] / side - 1) < 0.2, i
    jitter = np.abs(np.diff(track.faces[:, :2], n=2, axis=0)).mean()
    assert jitter < 0.02 * track.faces[:, 2].mean()  # smooth: second differences of a few pixels at most


def test_short_gaps_are_held_and_long_ones_left_as_they_are(tmp_path):
    """At 10 fps a gap of up to 0.5 s (5 frames) is bridged: 2 frames without the face are, 8 are not."""
    gaps = write_shot(tmp_path / "gaps.mp4", fps=Fraction(10), frames=20, hidden={3, 4} | set(range(8, 16)),
                      travel=0.1)
    track = tracked(gaps)
    assert track.present[:8].all() and track.present[16:].all()
    assert not track.present[8:15].any()  # the long gap stays as it was


def test_bad_choices_of_face_and_frame_say_what_was_found(shot30, tmp_path):
    with pytest.raises(PortraitError) as info:
        tracked(shot30, face=2)
    says(str(info.value), "face 2", "1 face")
    with pytest.raises(PortraitError) as info:
        tracked(shot30, portrait_frame=24)
    says(str(info.value), "portrait frame 24", "24 frames")
    empty = write_shot(tmp_path / "empty.mp4", frames=6, hidden=range(6))
    with pytest.raises(PortraitError) as info:
        tracked(empty)
    says(str(info.value), "no face", "3 of its 6 frames", "every 2")


def stand_in_renderer(monkeypatch):
    """The footage's motion read cheaply off its crops, and frames 'rendered' from the portrait with a tint that
    follows the motion: what pasting is judged on (the real renderer's share is the parity tests')."""

    def motion(model, crops, portrait=None, relative=True, batch_size=None, callback=None):
        return crops.mean(dim=(2, 3)).repeat(1, 7)[:, :20]

    def frames(model, portrait, latents, batch_size=None):
        step = batch_size or latents.shape[0]
        for s in range(0, latents.shape[0], step):
            part = latents[s: s + step].to(torch.float32)
            gain = 0.85 + 0.15 * torch.sin(part.sum(dim=1)).view(-1, 1, 1, 1)
            yield s, ((portrait.image + 1) / 2 * gain).clamp(0, 1).expand(part.shape[0], -1, -1, -1)

    monkeypatch.setattr(footage_stage, "extract_motion", motion)
    monkeypatch.setattr(video_render, "iter_frames", frames)


@pytest.mark.parametrize("fps, extend", [(30, "pingpong"), (24, "loop")])
def test_the_head_is_pasted_where_the_face_is_and_nothing_else_changes(tmp_path, monkeypatch, fps, extend):
    stand_in_renderer(monkeypatch)
    shot = write_shot(tmp_path / "shot.mp4", fps=Fraction(fps), frames=16)
    footage = FootageFile(shot.path)
    renderer = golden.renderer()
    followed = footage_stage.follow_face(renderer, footage, FollowOptions())
    speech = Motion(latents=followed.portrait.alpha0.float()[None] + 0.3 * torch.randn(1, 30, 20), fps=25)
    motion = pipeline.dub_motion(followed, speech, DubOptions(extend=extend))
    frames = int(30 / 25 * fps)  # the speech's 1.2 s at the footage's rate, whole frames
    assert motion.num_frames == frames and motion.fps == fps
    assert motion.shot.frames.tolist() == footage_order(16, frames, extend).tolist()
    clip = pipeline.dub_video(renderer, followed, motion, footage, ClipOptions(batch_size=4))
    assert clip.size == (480, 270)
    out = np.concatenate(list(VideoWrite(clip).pieces()))
    originals = footage.frames(motion.shot.frames)
    centred = 0
    for i in range(frames):
        changed = np.abs(out[i].astype(int) - originals[i].astype(int)).max(-1) > 0
        cx, cy, side = shot.face(int(motion.shot.frames[i]))
        ys, xs = np.nonzero(changed)
        centred += math.hypot(xs.mean() - cx, ys.mean() - cy) < 0.2 * side
        y, x = np.mgrid[0:270, 0:480]
        far = np.hypot(x - cx, y - cy) > 1.2 * side
        assert not changed[far].any(), i  # bit for bit the footage away from the face
    assert centred >= 0.95 * frames


def test_a_dub_needs_its_footage_and_a_dubbed_motion(tmp_path, monkeypatch, shot30):
    stand_in_renderer(monkeypatch)
    footage = FootageFile(shot30.path)
    renderer = golden.renderer()
    followed = footage_stage.follow_face(renderer, footage, FollowOptions())
    plain = Motion(latents=followed.portrait.alpha0.float()[None].repeat(1, 10, 1))
    with pytest.raises(AniTalkerError, match="Dub Motion"):
        pipeline.dub_video(renderer, followed, plain, footage, ClipOptions())
    motion = pipeline.dub_motion(followed, plain, DubOptions())
    other = FootageFrames(torch.zeros(24, 100, 100, 3), 30)
    with pytest.raises(PortraitError, match="100x100"):
        pipeline.dub_video(renderer, followed, motion, other, ClipOptions())
    with pytest.raises(AniTalkerError, match="renderer"):
        pipeline.dub_motion(followed, plain, DubOptions(blinks="footage"))


def test_the_face_is_found_again_after_a_cut_and_not_smoothed_across_it(tmp_path):
    cut = write_shot(tmp_path / "cut.mp4", fps=Fraction(25), frames=24, cut_at=12, travel=0.1)
    track = tracked(cut)
    assert track.present.all()
    for i in (10, 11, 13, 14):  # right before and after the cut the track is where the face is
        cx, cy, side = cut.face(i)
        assert math.hypot(track.faces[i, 0] - cx, track.faces[i, 1] - cy) < 0.2 * side, i


def test_a_dubs_frames_carry_their_moving_matte_and_a_one_frame_video_is_a_picture(tmp_path, monkeypatch):
    from dataclasses import replace

    from anitalker_core.video.video_render import OutputPixels

    stand_in_renderer(monkeypatch)
    shot = write_shot(tmp_path / "shot.mp4", frames=4)
    footage = FootageFile(shot.path)
    renderer = golden.renderer()
    followed = footage_stage.follow_face(renderer, footage, FollowOptions())
    speech = Motion(latents=followed.portrait.alpha0.float()[None].repeat(1, 8, 1), fps=25)
    clip = pipeline.dub_video(renderer, followed, pipeline.dub_motion(followed, speech), footage, ClipOptions())
    pieces = np.concatenate(list(VideoWrite(replace(clip, pixels=OutputPixels("uint16", matte=True))).pieces()))
    assert pieces.shape[1:] == (270, 480, 4) and pieces.dtype == np.uint16
    for i, j in enumerate(clip.shot.frames):
        cx, cy, side = shot.face(int(j))
        alpha = pieces[i, ..., 3]
        y, x = np.mgrid[0:270, 0:480]
        assert alpha[round(cy), round(cx)] == 65535 and alpha[np.hypot(x - cx, y - cy) > 1.2 * side].max() == 0
    still = write_shot(tmp_path / "still.mp4", frames=1)
    single = footage_stage.follow_face(renderer, FootageFile(still.path), FollowOptions())
    motion = pipeline.dub_motion(single, speech)
    assert motion.shot.frames.tolist() == [0] * motion.num_frames and motion.shot.present.all()

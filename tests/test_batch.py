"""Batch manifests: parsing rows like the command line, a report per row, failures that do not stop the batch,
resuming, local worker processes and Ray."""

from __future__ import annotations

import json
import sys
import wave as wave_module
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import MODELS_VARIANT as VARIANT
from tests.support.golden import MEDIA
from PIL import Image
from tests.support.says import says

from anitalker_core.app.manifest import Row, read_manifest
from anitalker_core.app.report import Report, RowResult, output_complete, report_line
from anitalker_core.app.cli import build_parser, clip_options, main
from anitalker_core.errors import ManifestError
from anitalker_core.options import ClipOptions
from anitalker_core.video.writers import Mp4Writer

CLIP_S = 0.1
"""Each good row's recording: 2 frames, one batch."""


def batch_defaults(*argv: str) -> ClipOptions:
    """The batch command's clip options, as run_batch gets them."""
    return clip_options(vars(build_parser().parse_args(["batch", "m.csv", "--out", "o", *argv])))


def rows_of(manifest: Path, *argv: str, out_dir: Path = Path("/clips")):
    return read_manifest(manifest, batch_defaults(*argv), out_dir)


# -- the manifest, without models ---------------------------------------------------------------------------

def test_csv_rows_take_command_line_defaults_and_parse_cells_like_the_options(tmp_path):
    (tmp_path / "lines").mkdir()
    manifest = tmp_path / "lines" / "m.csv"
    manifest.write_text(
        "portrait,audio,out,steps,yaw,paste_back,color_match,keyframes,seed-mode\n"
        "faces/a.png,001.wav,first,7,-12.5,yes,false,0: yaw=0; 2s: yaw=20,official\n"
        f"{tmp_path}/b.png,002.wav,,,,0,,,\n"
    )
    first, second = rows_of(manifest, "--steps", "3", "--paste-back", "--upscale-model", "up.pth")
    assert first.error == "" and second.error == ""
    a, b = first.options, second.options
    assert a.portrait == tmp_path / "lines" / "faces" / "a.png" and a.audio == tmp_path / "lines" / "001.wav"
    assert a.out == Path("/clips/first.mp4") and b.out == Path("/clips/b_002.mp4")
    assert (a.steps, a.yaw, a.paste_back, a.color_match, a.seed_mode) == (7, -12.5, True, False, "official")
    assert a.keyframes == "0: yaw=0; 2s: yaw=20"
    assert (b.steps, b.yaw, b.paste_back, b.color_match, b.seed_mode) == (3, None, False, True, "torch")
    assert b.portrait == tmp_path / "b.png"
    assert b.upscale_model == Path.cwd() / "up.pth"  # the command line's paths: from the working directory
    assert a.frames_dir is None and a.save_motion is None and a.variant == "hubert_audio_only"
    assert first.given == {"steps": "7", "yaw": "-12.5", "paste_back": "yes", "color_match": "false",
                           "keyframes": "0: yaw=0; 2s: yaw=20", "seed_mode": "official"}


def test_jsonl_rows_take_numbers_booleans_and_null(tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"portrait": "p.png", "audio": "a.wav", "steps": 4, "paste_back": True, "calm_silence": 0.5,
         "upscale_model": "models/x2.pth"},
        {"portrait": "p.png", "audio": "b.wav", "yaw": None, "variant": "mfcc_pose_only"},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + '\n\n[1, 2]\n"p.png"\n{"portrait": \n')
    first, second, third, fourth, fifth = rows_of(manifest, "--yaw", "5")
    assert (first.options.steps, first.options.paste_back, first.options.calm_silence) == (4, True, 0.5)
    assert first.options.upscale_model == tmp_path / "models" / "x2.pth"  # a row's paths: from the manifest
    assert (second.options.yaw, second.options.variant) == (5.0, "mfcc_pose_only")
    assert third.options is None and "row 3" in third.error and "not a JSON object but list" in third.error
    assert fourth.error == "row 4: not a JSON object but str"
    assert fifth.error.startswith("row 5: not a JSON object (Expecting value")


@pytest.mark.parametrize("cells, message", [
    ("steps=abc", "steps: expected a whole number, got 'abc'"),
    ("calm_silence=2", "calm_silence: expected a number from 0 to 1, got '2'"),
    ("crop=middle", "crop: expected one of auto, full, manual, got 'middle'"),
    ("paste_back=maybe", "paste_back: expected true/false, yes/no or 1/0, got 'maybe'"),
    ("out=../up.mp4", "must be a file name inside the output folder"),
    ("out=clip.mov", "must be an .mp4 file name"),
    ("audio=", "row 2 has no audio"),
])
def test_a_bad_cell_fails_its_row_only(tmp_path, cells, message):
    name, value = cells.split("=")
    manifest = tmp_path / "m.jsonl"
    good = {"portrait": "p.png", "audio": "a.wav"}
    bad = dict(good, audio="b.wav")
    bad[name] = value
    manifest.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    ok, failed = rows_of(manifest)
    assert ok.error == "" and ok.options is not None
    assert failed.options is None and message in failed.error, failed.error


def test_cells_outside_the_named_columns_fail_their_row(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("portrait,audio,\np.png,a.wav,\np.png,b.wav,,\np.png,c.wav,3\np.png,d.wav,,4\n")
    rows = rows_of(manifest)  # a spreadsheet's trailing commas are fine, values beyond the header are not
    assert [r.error for r in rows[:2]] == ["", ""]
    for n, row in zip((3, 4), rows[2:]):
        says(row.error, f"row {n}", "outside the named columns")


def test_unknown_columns_refuse_the_manifest_and_suggest_the_name(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("portrait,audio,stpes,device\np.png,a.wav,3,cuda\n")
    with pytest.raises(ManifestError) as info:
        rows_of(manifest)
    text = str(info.value)
    assert "'stpes' (did you mean 'steps'?)" in text and "'device'" in text and "command line" in text


def test_two_rows_writing_one_file_or_a_repeated_column_refuse_the_manifest(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("portrait,audio,seed\nanna.png,line1.wav,1\nanna.png,line1.wav,2\n")
    with pytest.raises(ManifestError) as info:
        rows_of(manifest)
    says(str(info.value), "rows 1 and 2", "anna_line1.mp4", "out")
    manifest.write_text("portrait,audio,out\nanna.png,line1.wav,take\nben.png,line2.wav,Take.mp4\n")
    with pytest.raises(ManifestError, match="both write Take.mp4"):
        rows_of(manifest)
    manifest.write_text("portrait,audio,seed,Seed\nanna.png,line1.wav,1,2\n")
    with pytest.raises(ManifestError, match="has the column.s. seed more than once"):
        rows_of(manifest)


def test_unreadable_manifests_are_refused(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        rows_of(tmp_path / "nope.csv")
    (tmp_path / "m.txt").write_text("portrait,audio\n")
    with pytest.raises(ManifestError, match=r"must be a \.csv .* or a \.jsonl"):
        rows_of(tmp_path / "m.txt")
    (tmp_path / "m.csv").write_text("portrait,audio\n")
    with pytest.raises(ManifestError, match="has no rows"):
        rows_of(tmp_path / "m.csv")


def test_a_row_with_a_video_dubs_that_footage(tmp_path, monkeypatch):
    from anitalker_core.app import headless

    (tmp_path / "job.csv").write_text(
        "portrait,video,audio,out,extend,keep_footage_audio\n"
        ",shots/interview.mp4,lines/one.wav,,loop,0.3\n"
        "faces/anna.png,,lines/one.wav,anna,,\n"
        "faces/anna.png,shots/interview.mp4,lines/one.wav,both,,\n"
        ",,lines/one.wav,neither,,\n")
    dub, animated, both, neither = read_manifest(tmp_path / "job.csv", ClipOptions(), tmp_path / "out")
    assert dub.options.video == tmp_path / "shots" / "interview.mp4"
    assert dub.out == tmp_path / "out" / "interview_one.mp4"
    assert (dub.options.extend, dub.options.keep_footage_audio, dub.options.portrait) == ("loop", 0.3, None)
    assert animated.options.video is None and animated.options.portrait == tmp_path / "faces" / "anna.png"
    says(both.error, "row 3", "a portrait and a video")
    says(neither.error, "row 4", "portrait (or video")
    ran = []
    monkeypatch.setattr(headless, "dub_clip", lambda models, clip, **k: ran.append(("dub", clip.video)))
    monkeypatch.setattr(headless, "animate_clip", lambda models, clip, **k: ran.append(("animate", clip.portrait)))
    headless.clip_of_row(None, dub.options)
    headless.clip_of_row(None, animated.options)
    assert ran == [("dub", dub.options.video), ("animate", animated.options.portrait)]
    assert "--video" not in build_parser().parse_args(["batch", "m.csv", "--out", "o"]).__dict__


def test_output_complete_means_a_whole_mp4_under_the_final_name(tmp_path):
    whole = tmp_path / "whole.mp4"
    with Mp4Writer(whole, fps=25) as writer:
        writer.write(np.full((5, 64, 64, 3), 128, dtype=np.uint8))
    assert output_complete(whole)
    torn = tmp_path / "torn.mp4"
    torn.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert not output_complete(torn)
    assert not output_complete(tmp_path / "missing.mp4")


def test_report_appends_as_rows_end_and_keeps_the_latest_line_per_row(tmp_path):
    rows = [Row(n, Path(f"/p{n}.png"), Path("/a.wav"), tmp_path / f"{n}.mp4") for n in (1, 2, 3)]
    path = tmp_path / "report.jsonl"
    first = Report(path, rows)
    first.add(report_line(rows[1], RowResult(2, "failed", "no face")))
    first.add(report_line(rows[0], RowResult(1, "done", seconds=3.14159)))
    with path.open("a") as f:
        f.write('{"row": 3, "sta')  # a crash in the middle of a line
    second = Report(path, rows)  # the resumed run
    second.add(report_line(rows[1], RowResult(2, "done", seconds=2.0)))
    assert len(path.read_text().splitlines()) == 4  # appended, not yet rewritten
    second.close()
    lines = [json.loads(t) for t in path.read_text().splitlines()]
    assert [(x["row"], x["status"], x["seconds"]) for x in lines] == [(1, "done", 3.14), (2, "done", 2.0)]
    assert lines[0]["portrait"] == "/p1.png" and lines[0]["error"] is None


# -- end to end with random-weight models -------------------------------------------------------------------

def write_excerpt(path: Path, start_s: float, seconds: float) -> Path:
    with wave_module.open(str(MEDIA / "statue.wav"), "rb") as f:
        rate, channels, width = f.getframerate(), f.getnchannels(), f.getsampwidth()
        f.setpos(int(start_s * rate))
        data = f.readframes(int(seconds * rate))
    with wave_module.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(data)
    return path


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A CSV manifest of three rows: two good clips (0.1 s: 2 frames) and a portrait without a face."""
    d = tmp_path_factory.mktemp("job")
    (d / "media").mkdir()
    write_excerpt(d / "media" / "one.wav", 0.4, CLIP_S)
    write_excerpt(d / "media" / "two.wav", 1.2, CLIP_S)
    Image.new("RGB", (320, 320), (120, 130, 140)).save(d / "media" / "flat.png")
    (d / "job.csv").write_text(
        "portrait,audio,out,seed,crop\n"
        f"{MEDIA / 'monalisa.jpg'},media/one.wav,,1,\n"
        f"{MEDIA / 'aiface2.png'},media/two.wav,second,2,full\n"
        "media/flat.png,media/one.wav,no_face,3,\n"
    )
    return d / "job.csv"


def batch_args(manifest: Path, out: Path, models: Path, *extra: str) -> list[str]:
    return ["batch", str(manifest), "--out", str(out), "--variant", VARIANT, "--models", str(models),
            "--steps", "2", "--device", "cpu", "--offline", *extra]


def read_report(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        assert container.streams.audio, "the speech is muxed in"
        return sum(1 for _ in container.decode(video=0))


def assert_first_run(out: Path, manifest: Path) -> None:
    report = read_report(out)
    assert [(r["row"], r["status"]) for r in report] == [(1, "done"), (2, "done"), (3, "failed")]
    assert report[0]["out"] == str(out / "monalisa_one.mp4") and report[1]["out"] == str(out / "second.mp4")
    assert report[0]["audio"] == str(manifest.parent / "media" / "one.wav")
    assert report[1]["options"] == {"seed": "2", "crop": "full"} and report[0]["error"] is None
    assert "no face was found in the 320x320 portrait" in report[2]["error"]
    assert all(r["seconds"] > 0 for r in report[:2])
    for name in ("monalisa_one.mp4", "second.mp4"):
        assert abs(frame_count(out / name) - CLIP_S * 25) <= 1
    assert sorted(p.name for p in out.iterdir()) == ["monalisa_one.mp4", "report.jsonl", "second.mp4"]


@pytest.mark.slow
def test_batch_records_a_failed_row_goes_on_and_resumes(job, models_dir, tmp_path, capsys, monkeypatch):
    """Two local worker processes first; then a resumed run in this one process: the whole output is skipped, the
    damaged one redone, the failed row tried again. The stand-in networks encode and draw, in the worker processes
    too: what is checked of the clips is their length and sound."""
    from anitalker_core.app import workers
    from tests.support.stand_in import stand_in_networks, start_worker_process_with_stand_ins

    monkeypatch.setattr(workers, "_start_worker_process", start_worker_process_with_stand_ins)
    stand_in_networks(monkeypatch)
    out = tmp_path / "out"
    assert main(batch_args(job, out, models_dir, "--workers", "2")) == 1
    err = capsys.readouterr().err
    assert "2 done, 0 skipped, 1 failed" in err and "row 3 failed: no face" in err
    assert_first_run(out, job)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}

    (out / "second.mp4").write_bytes((out / "second.mp4").read_bytes()[:1000])  # a damaged output is redone
    assert main(batch_args(job, out, models_dir)) == 1
    assert "1 done, 1 skipped, 1 failed" in capsys.readouterr().err
    report = read_report(out)
    assert [(r["row"], r["status"]) for r in report] == [(1, "skipped"), (2, "done"), (3, "failed")]
    first = [name for name in stamps if name != "second.mp4"]
    assert len(first) == 1 and (out / first[0]).stat().st_mtime_ns == stamps[first[0]]  # not rendered again
    assert abs(frame_count(out / "second.mp4") - CLIP_S * 25) <= 1


@pytest.mark.slow
def test_the_same_rows_on_a_local_ray_instance(job, models_dir, tmp_path, capsys, monkeypatch):
    """The rows on Ray actors; their processes encode and draw with the stand-in networks (Ray's worker set-up
    hook), as the local worker processes do above."""
    from tests.support.golden import REPO

    # Ray's switch for a single-machine instance on the loopback address (read when ray is imported)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'anitalker-comfy[ray]'); CI installs it")
    # as many CPUs as this test process's torch threads: under pytest-xdist the other cores are other workers',
    # and an actor with more threads than free cores only waits on them
    ray.init(address="local", num_cpus=torch.get_num_threads(), include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.support.stand_in.install_stand_ins",
                          "env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        out = tmp_path / "out"
        assert main(batch_args(job, out, models_dir, "--ray")) == 1
        assert "2 done, 0 skipped, 1 failed" in capsys.readouterr().err
        assert_first_run(out, job)
    finally:
        ray.shutdown()


def test_ray_missing_is_a_clear_error(job, models_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(batch_args(job, tmp_path / "out", models_dir, "--ray")) == 2
    says(capsys.readouterr().err, "--ray", "pip install 'anitalker-comfy[ray]'")

"""bench.gpu, the one prepared GPU run: its GPU tests gate the figures, its clock splits a clip into stages, and
its small CPU run writes every figure the issue asks for (the figures themselves are for a GPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench import gpu
from bench.gpu_tests import GpuTestsFailed, run_tests
from bench.stage_clock import StageClock

from anitalker_core.device_policy import default_batch_size, render_precision
from anitalker_core.image.face_restore import FaceRestorer

CPU = torch.device("cpu")


def write_tests(folder, body: str):
    folder.mkdir()
    (folder / "test_here.py").write_text("import pytest\n\n" + body)
    return folder


def test_the_gpu_tests_gate_the_bench_a_failure_stops_it_with_its_output(tmp_path, capsys):
    passing = write_tests(tmp_path / "ok", "def test_a():\n    assert True\n\n"
                                           "@pytest.mark.skip(reason='no GPU')\ndef test_b():\n    pass\n")
    assert run_tests(["test_here.py"], cwd=passing) == {"passed": 1, "skipped": 1, "failed": 0, "errors": 0,
                                                        "command": "python -m pytest test_here.py"}
    with pytest.raises(GpuTestsFailed):  # on a CUDA run a skipped GPU test checked nothing
        run_tests(["test_here.py"], cwd=passing, require_run=True)
    failing = write_tests(tmp_path / "bad", "def test_parity():\n    assert 0.25 < 0.01, 'frames differ'\n")
    with pytest.raises(GpuTestsFailed) as info:
        run_tests(["test_here.py"], cwd=failing)
    assert info.value.code == 1
    shown = capsys.readouterr().err
    assert "frames differ" in shown and "nothing was measured" in shown


def test_the_stage_clock_splits_a_run_at_the_paths_progress_and_times_parts_of_the_video_stage_only():
    faces = FaceRestorer(lambda x, w: x, side=8)
    original = FaceRestorer.__call__
    clock = StageClock(CPU)
    with clock.run():
        faces(torch.rand(1, 3, 8, 8))  # the estimate's warm-up: part of the first stage
        clock.progress("speech features")
        clock.progress("sampling motion")
        clock.progress("rendering frames")
        faces(torch.rand(1, 3, 8, 8))
    assert FaceRestorer.__call__ is original  # the timers are taken off again
    figures = clock.figures()
    assert list(figures)[:4] == ["inputs_and_estimate", "features", "sampling", "video"]
    assert clock.parts["restore"] > 0 and set(clock.parts) == {"restore"}
    assert math.isclose(sum(clock.stages.values()), clock.seconds)
    assert figures["restore"] == round(clock.parts["restore"], 4) and figures["rendering"] == 0
    assert figures["video_other"] == round(max(clock.stages["video"] - clock.parts["restore"], 0.0), 4)


def test_goals_say_met_short_or_not_measured():
    judged = gpu.goals({"realtime_256": 41.0, "realtime_1080_restore": 2.5, "peak_gpu_gb_1080": 6.0,
                        "fp16_mean_abs_vs_fp32_255": None})
    assert [judged[name]["met"] for name, *_ in gpu.GOALS] == [True, False, True, None]
    assert judged["peak_gpu_gb_1080"]["goal"] == "<= 6 GB"


@pytest.mark.slow
def test_the_small_cpu_run_writes_every_figure_the_issue_asks_for(models_dir, tmp_path, capsys, monkeypatch):
    """``python -m bench.gpu --device cpu --small`` (its main, in-process, on the suite's models): the GPU tests ran
    first (their gate is tested above; here they report as they do without a GPU, without a second pytest), then
    both clips, the renderer, the precision comparison and the face model, all in one JSON with the command, commit,
    device and torch; the summary compares each figure with its goal."""
    asked = []
    monkeypatch.setattr(gpu, "run_tests", lambda require_run: asked.append(require_run) or {
        "passed": 0, "skipped": 4, "failed": 0, "errors": 0, "command": "python -m pytest tests/test_gpu.py"})
    argv = ["--device", "cpu", "--small", "--models", str(models_dir), "--results", str(tmp_path)]
    path = gpu.main(argv)
    record = json.loads(path.read_text())
    assert path.parent == tmp_path and path.name.startswith("gpu-") and path.suffix == ".json"
    assert record["command"] == "python -m bench.gpu " + " ".join(argv)
    assert record["commit"] and record["torch"] == torch.__version__ and record["device"]
    f = record["figures"]
    assert f["small"] is True and f["torch"] == torch.__version__
    tests = f["gpu_tests"]
    assert asked == [False] and tests["skipped"] == 4 and tests["command"] == "python -m pytest tests/test_gpu.py"

    for name, case in (("realtime_256", f["case_256"]), ("realtime_1080_restore", f["case_1080_restore"])):
        assert f[name] == case["realtime"] > 0 and math.isfinite(f[name])
        assert case["realtime"] == round(case["audio_s"] / case["wall_s"], 3)
        assert case["mp4_bytes"] > 0 and case["estimate"].startswith("estimate: about")
        stages = case["stages_s"]
        assert {"inputs_and_estimate", "features", "sampling", "video", "rendering", "encoding"} <= set(stages)
        assert all(v >= 0 for v in stages.values()) and stages["rendering"] > 0
        main_stages = sum(stages[k] for k in ("inputs_and_estimate", "features", "sampling", "video"))
        assert math.isclose(main_stages, case["wall_s"], abs_tol=0.01)
        assert case["first_run"] is None  # the small run runs each clip once
    assert f["stages_256_s"] == f["case_256"]["stages_s"] and f["case_256"]["stages_s"]["restore"] == 0
    assert f["stages_1080_restore_s"]["restore"] > 0 and f["case_1080_restore"]["canvas"] == "480x270"

    assert f["peak_gpu_gb_1080"] is None and f["fp16_mean_abs_vs_fp32"] is None  # a CPU has neither
    low = f["low_precision_vs_fp32"]
    assert low["precision"] == "bf16" and 0 < low["mean_abs"] < 0.05 and low["mean_abs_255"] == \
        round(low["mean_abs"] * 255, 3)
    render = f["render"]
    assert f["render_fps_256"] == render["fps"] > 0 and render["batch"] == default_batch_size(CPU)
    assert render["precision"] == render_precision("auto", CPU).name
    face = f["face_model"]
    assert "RestoreFormer" in face["pack"]["model"] and face["pack"]["faces_per_s"] > 0
    assert face["pack_vs_fp32_mean_abs_255"] == 0  # on a CPU the pack runs face models in plain fp32
    assert isinstance(f["nvenc"]["available"], bool)
    assert [f["goals"][name]["value"] for name, *_ in gpu.GOALS] == \
        [f["realtime_256"], f["realtime_1080_restore"], None, None]

    summary = capsys.readouterr().out
    for name, *_ in gpu.GOALS:
        assert name in summary
    assert "not measured here" in summary and "small run" in summary

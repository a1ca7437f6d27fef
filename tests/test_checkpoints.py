"""Checkpoint loading: every layout the released files come in, and every way a file can be wrong."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from tests.support.golden import GOLDEN, manifest, state_dict
from safetensors.torch import save_file

from anitalker_core.errors import CheckpointError, MissingWeightsError
from anitalker_core.models.checkpoints import detect_stage2_variant, load_stage1, load_stage2, read_state_dict
from anitalker_core.weights.variants import STAGE2_VARIANTS, VARIANTS, get_variant
from anitalker_core.weights.files import STAGE2, ensure_files, resolve_inside


@pytest.fixture(scope="module")
def s1(checkpoints):
    return checkpoints.stage1()


@pytest.fixture(scope="module")
def s2(checkpoints):
    return checkpoints.stage2("mfcc_pose_only")


def test_variant_detected_from_keys_for_all_five():
    for variant in STAGE2_VARIANTS:
        keys = [k[len("ema_model."):] for k in manifest(variant) if k.startswith("ema_model.")]
        assert detect_stage2_variant(keys) == variant
    keys = [k[len("ema_model."):] for k in manifest("mfcc_pose_only") if k.startswith("ema_model.")]
    with pytest.raises(CheckpointError, match="MFCC audio with no control.*never released"):
        detect_stage2_variant([k for k in keys if not k.startswith("pose_")])


def test_the_variant_registry_is_what_the_files_and_fixtures_say():
    assert set(VARIANTS) == {p.name[len("stage2_"):-len("_manifest.json")]
                             for p in GOLDEN.glob("stage2_*_manifest.json")}
    for name, v in VARIANTS.items():
        assert name == f"{v.audio}_{v.control}" and STAGE2[name] == v.file_name
        assert v.file_name == f"stage2_{v.control}_{v.audio}.ckpt"
        predictors = {k.split(".")[1] for k in manifest(name) if k.startswith("ema_model.") and "_predictor." in k}
        assert predictors == {{"pose": "pose_predictor", "location": "location_predictor",
                               "scale": "face_scale_predictor"}[a] for a in v.attributes}
    with pytest.raises(CheckpointError, match="'mfcc_audio_only'.*expected one of"):
        get_variant("mfcc_audio_only")


def test_stage1_wrapped_state_dict_extra_keys_and_safetensors(tmp_path):
    sd = state_dict("stage1")
    torch.save({"state_dict": {**sd, "lia.train_only.weight": torch.zeros(2)}}, tmp_path / "wrapped.ckpt")
    m = load_stage1(tmp_path / "wrapped.ckpt")
    assert torch.equal(m.dec.direction.weight, sd["dec.direction.weight"])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "stage1.safetensors"))
    assert torch.equal(load_stage1(tmp_path / "stage1.safetensors").enc.fc[4].bias, sd["enc.fc.4.bias"])


def test_stage2_uses_ema_weights_not_model_weights(s2):
    g = load_stage2(s2)
    sd = state_dict("mfcc_pose_only")
    assert torch.equal(g.out_proj.weight, sd["ema_model.out_proj.weight"])
    assert not torch.equal(g.out_proj.weight, sd["model.out_proj.weight"])


def test_wrong_stage_given_to_each_loader(s1, s2):
    with pytest.raises(CheckpointError, match=r"stage1\.ckpt.*stage-1 renderer.*not a stage-2"):
        load_stage2(s1)
    with pytest.raises(CheckpointError, match=r"stage-2 motion generator.*not the stage-1 renderer"):
        load_stage1(s2)


def test_missing_keys_and_wrong_shapes_name_the_file(tmp_path):
    sd = state_dict("stage1")
    del sd["dec.direction.weight"]
    torch.save(sd, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match=r"partial\.ckpt.*missing.*dec\.direction\.weight"):
        load_stage1(tmp_path / "partial.ckpt")
    sd = state_dict("stage1")
    sd["dec.direction.weight"] = torch.zeros(512, 10)
    torch.save(sd, tmp_path / "shapes.ckpt")
    with pytest.raises(CheckpointError, match=r"wrong shapes.*direction\.weight \(expected \(512, 20\), found \(512, 10\)"):
        load_stage1(tmp_path / "shapes.ckpt")
    sd2 = state_dict("hubert_pose_only")
    sd2["ema_model.unknown.weight"] = torch.zeros(1)
    torch.save(sd2, tmp_path / "extra2.ckpt")
    with pytest.raises(CheckpointError, match=r"unexpected weights.*unknown\.weight"):
        load_stage2(tmp_path / "extra2.ckpt")


def test_truncated_empty_and_garbage_files(s1, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(s1.read_bytes()[: os.path.getsize(s1) // 3])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt.*(truncated|corrupt)"):
        load_stage1(cut)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.ckpt is empty \(0 bytes\)"):
        load_stage1(tmp_path / "empty.ckpt")
    (tmp_path / "text.safetensors").write_text("not weights")
    with pytest.raises(CheckpointError, match=r"not a valid \.safetensors"):
        read_state_dict(tmp_path / "text.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.ckpt")


class RunsCode:
    """Unpickling this calls os.system: a stand-in for a malicious checkpoint."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_unsafe_pickle_is_refused_without_running_it(tmp_path, legacy):
    global MARKER
    MARKER = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"enc.fc.0.weight": torch.zeros(1), "evil": RunsCode()}
    if legacy:
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(payload, path)
    # the file really is dangerous: a plain unpickler would run the command
    assert b"system" in path.read_bytes()
    with pytest.raises(CheckpointError, match=r"refused to load .*evil\.ckpt.*code could run"):
        load_stage1(path)
    assert not MARKER.exists()


def test_plain_pickle_of_non_tensor_is_refused(tmp_path):
    path = tmp_path / "obj.pt"
    path.write_bytes(pickle.dumps({"a": RunsCode}))
    with pytest.raises(CheckpointError, match=r"refused to load .*obj\.pt.*pickled objects other than tensors"):
        read_state_dict(path)


def test_model_names_cannot_leave_the_models_folder(tmp_path):
    for name in ("../stage1.ckpt", "/etc/passwd", "a/../../b.ckpt", ""):
        with pytest.raises(CheckpointError, match="models folder|without '..'|must be a file name"):
            resolve_inside(tmp_path, name)
    assert resolve_inside(tmp_path, "stage1.ckpt") == (tmp_path / "stage1.ckpt").resolve()
    elsewhere = tmp_path / "big_disk" / "stage1.ckpt"  # the user's own link to weights kept elsewhere
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "stage1.ckpt").symlink_to(elsewhere)
    assert resolve_inside(tmp_path / "models", "stage1.ckpt").read_bytes() == b"x"


def test_offline_missing_files_message_lists_files_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as info:
        ensure_files(["stage1.ckpt", "chinese-hubert-large"], tmp_path, allow_download=True)
    msg = str(info.value)
    assert "stage1.ckpt" in msg and "chinese-hubert-large" in msg and str(tmp_path.resolve()) in msg
    assert "huggingface.co/taocode/anitalker_ckpts" in msg and "TencentGameMate/chinese-hubert-large" in msg


def test_missing_hubert_folder_is_a_clear_error(tmp_path):
    from anitalker_core.audio.features import HubertFeatures

    with pytest.raises(MissingWeightsError, match=r"HuBERT audio encoder folder .* is missing.*chinese-hubert-large"):
        HubertFeatures(tmp_path / "chinese-hubert-large")

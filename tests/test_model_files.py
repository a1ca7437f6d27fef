"""Fetching weights: one quick probe decides online or offline, failures cost one line and leave no hub files."""

from __future__ import annotations

import inspect
import io
import logging
import threading

import pytest
from tests.support.hub_servers import empty_hub, silent_hub

from anitalker_core.errors import MissingWeightsError
from anitalker_core.weights import files as model_files
from anitalker_core.weights.files import ensure_files, hub_reachable

CKPT = "stage1.ckpt"
HUBERT = "chinese-hubert-large"


def test_probe_gives_up_when_the_hub_does_not_answer_within_its_timeout(monkeypatch):
    """The probe waits for its timeout and no longer, name lookup included (urlopen's own timeout does not bound a
    lookup, so the probe's thread is left behind): a hub that answers only later counts as unreachable."""
    late = threading.Event()
    asked = []

    def answers_late(request, timeout):
        asked.append((request.get_method(), timeout))
        late.wait(30)  # a probe that waited for the answer would see it and say True
        return io.BytesIO()

    monkeypatch.setattr(model_files.urllib.request, "urlopen", answers_late)
    try:
        assert hub_reachable("http://hub.test", timeout=0.05) is False
    finally:
        late.set()
    assert asked == [("HEAD", 0.05)]


def test_probe_counts_any_http_answer_as_reachable_and_refusals_as_not():
    with empty_hub() as url:
        assert hub_reachable(url, timeout=5) is True
    assert hub_reachable("http://127.0.0.1:9", timeout=5) is False  # nothing listens on the discard port
    assert hub_reachable("http://no-such-host.invalid", timeout=5) is False  # .invalid never resolves
    with silent_hub() as url:
        assert hub_reachable(url, timeout=0.2) is False  # a server that never answers


def test_missing_weights_ask_the_hub_once_with_the_probe_timeout_and_download_nothing(tmp_path, monkeypatch,
                                                                                     no_download):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    probes = []
    monkeypatch.setattr(model_files, "hub_reachable", lambda *a, **k: probes.append((a, k)) or False)
    with pytest.raises(MissingWeightsError):
        ensure_files([CKPT, "stage2_audio_only_hubert.ckpt", HUBERT], tmp_path / "models")
    assert probes == [((), {})]  # one probe, with its own timeout (HUB_PROBE_SECONDS)
    assert inspect.signature(hub_reachable).parameters["timeout"].default == model_files.HUB_PROBE_SECONDS <= 3


def test_the_probe_follows_hf_endpoint(monkeypatch):
    with silent_hub() as url:
        monkeypatch.setenv("HF_ENDPOINT", url + "/")
        assert model_files.hub_endpoint() == url
        assert hub_reachable(timeout=0.3) is False


@pytest.fixture
def no_download(monkeypatch):
    def refuse(name, models_dir):
        raise AssertionError(f"{name} must not be downloaded")

    monkeypatch.setattr(model_files, "_download", refuse)


def test_unreachable_hub_means_no_download_attempt_and_a_message_that_says_what_to_do(
        tmp_path, monkeypatch, no_download):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(model_files, "hub_reachable", lambda *a, **k: False)
    models = tmp_path / "models"
    with pytest.raises(MissingWeightsError) as info:
        ensure_files([CKPT, "stage2_audio_only_hubert.ckpt", HUBERT], models)
    msg = str(info.value)
    for part in (CKPT, "stage2_audio_only_hubert.ckpt", HUBERT, str(models.resolve()), "cannot be reached",
                 "--models DIR", "--offline", "mfcc_pose_only", "mfcc_full_control", "188 MB", "1.26 GB"):
        assert part in msg, part
    assert not models.exists()


def test_hf_hub_offline_skips_the_probe_too(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_files, "hub_reachable", lambda *a, **k: pytest.fail("probed although offline"))
    with pytest.raises(MissingWeightsError, match="HF_HUB_OFFLINE is set"):
        ensure_files([CKPT], tmp_path)


def test_mfcc_hint_only_where_hubert_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as info:
        ensure_files([CKPT, "stage2_full_control_mfcc.ckpt"], tmp_path)
    assert "--models DIR" in str(info.value) and "mfcc_pose_only" not in str(info.value)


def fake_hub_download(outcome: str):
    """Does what huggingface_hub does in a local_dir: bookkeeping and lock files, retry warnings, then
    ``outcome``: "ok" (the file arrives), "fail" (nothing arrives) or "partial" (half a file, then failure)."""
    hub_log = logging.getLogger("huggingface_hub.utils._http")

    def download(name, models_dir):
        local = models_dir / HUBERT if name == HUBERT else models_dir
        bookkeeping = local / ".cache" / "huggingface"
        (bookkeeping / "download").mkdir(parents=True, exist_ok=True)
        (bookkeeping / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55")
        (bookkeeping / "download" / f"{name}.lock").touch()
        if outcome == "ok":
            (bookkeeping / "download" / f"{name}.metadata").write_text("commit\netag\n")
            if name == HUBERT:
                (local / "config.json").write_text("{}")
                (local / "pytorch_model.bin").write_bytes(b"w")
            else:
                (local / name).write_bytes(b"weights")
            return
        if outcome == "partial":
            (bookkeeping / "download" / f"{name}.incomplete").write_bytes(b"half")
        for attempt in (1, 2):
            hub_log.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://hub/x")
            hub_log.warning("Retrying in %ds [Retry %d/5].", attempt, attempt)
        raise OSError("Name or service not known\nsecond line of a long hub message")

    return download


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(model_files, "hub_reachable", lambda *a, **k: True)


@pytest.fixture
def hub_log_handler():
    """A handler on huggingface_hub's logger, as the library installs one itself."""
    handler = logging.StreamHandler()
    logging.getLogger("huggingface_hub").addHandler(handler)
    yield
    logging.getLogger("huggingface_hub").removeHandler(handler)


def test_a_failed_download_costs_one_line_and_leaves_no_hub_files(tmp_path, monkeypatch, capfd, online,
                                                                    hub_log_handler):
    monkeypatch.setattr(model_files, "_download", fake_hub_download("fail"))
    models = tmp_path / "models"
    lines = []
    with pytest.raises(MissingWeightsError, match="download failed"):
        ensure_files([CKPT, HUBERT], models, log=lines.append)
    assert lines == [
        f"downloading {CKPT} (188 MB) from https://huggingface.co/taocode/anitalker_ckpts into {models} ...",
        f"could not download {CKPT}: OSError: Name or service not known",
        f"downloading {HUBERT} (1.26 GB) from https://huggingface.co/TencentGameMate/chinese-hubert-large "
        f"into {models} ...",
        f"could not download {HUBERT}: OSError: Name or service not known",
    ]
    out, err = capfd.readouterr()
    assert "Retrying" not in out + err and "thrown while requesting" not in out + err
    assert not models.exists()  # created for the download, removed with the hub's files


def test_a_failed_download_keeps_the_users_own_files(tmp_path, monkeypatch, online):
    monkeypatch.setattr(model_files, "_download", fake_hub_download("fail"))
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / HUBERT).mkdir()
    with pytest.raises(MissingWeightsError):
        ensure_files([CKPT, HUBERT], tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [HUBERT, "notes.txt"]


def test_a_partial_download_is_kept_for_resuming_but_its_lock_is_not(tmp_path, monkeypatch, online):
    monkeypatch.setattr(model_files, "_download", fake_hub_download("partial"))
    with pytest.raises(MissingWeightsError):
        ensure_files([CKPT], tmp_path)
    assert (tmp_path / ".cache/huggingface/download/stage1.ckpt.incomplete").read_bytes() == b"half"
    assert not list(tmp_path.rglob("*.lock"))


def test_a_successful_download_lands_in_the_models_folder_without_lock_files(tmp_path, monkeypatch, online):
    monkeypatch.setattr(model_files, "_download", fake_hub_download("ok"))
    paths = ensure_files([CKPT, HUBERT], tmp_path)
    assert paths[CKPT].read_bytes() == b"weights" and (paths[HUBERT] / "config.json").is_file()
    assert not list(tmp_path.rglob("*.lock"))
    # huggingface_hub's record of what it fetched stays, so a later run knows the files are current
    assert (tmp_path / ".cache/huggingface/download/stage1.ckpt.metadata").is_file()

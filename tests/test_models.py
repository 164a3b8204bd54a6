# SPDX-License-Identifier: Apache-2.0
"""Operator re-training and the model registry: ``earmark train``, ``earmark models …``, a
shadow model in ``earmark detect`` (generated signals written to real files; real torch and
ONNX Runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import needs_ffmpeg, write_audio
from earmark.audio.decoders import random_decoder
from earmark.audio.generators import synth_music
from earmark.cli.main import app
from earmark.detect.registry import BUILTIN, Registry
from earmark.detect.trained import TrainedDetector
from earmark.errors import UnknownDetector

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytestmark = needs_ffmpeg
SR = 44100


def song(seed: int, seconds: float = 10.0) -> np.ndarray:
    return synth_music(sr=SR, duration=seconds, rng=np.random.default_rng(seed))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    for i in range(8):
        write_audio(root / "real" / f"r{i}.flac", song(100 + i), SR)
        write_audio(root / "ai" / f"a{i}.flac",
                    random_decoder(song(200 + i), SR, gen_sr=32000, strides=(8, 5, 4, 4),
                                   seed=i), SR)
    (root / "ai" / "broken.mp3").write_bytes(b"not audio at all" * 10)
    write_audio(root / "unseen_real.flac", song(300, 15.0), SR)
    write_audio(root / "unseen_ai.flac", random_decoder(song(301, 15.0), SR, gen_sr=32000,
                                                        strides=(8, 5, 4, 4), seed=99), SR)
    return root


def invoke(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def test_train_evaluate_register_shadow_promote(folders: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out, err = invoke("train", "--real", folders / "real", "--ai", folders / "ai",
                            "--out", tmp_path / "m1", "--db", home, "--epochs", "4")
    assert code == 0, err
    assert "held-out evaluation" in out and "AUC" in out
    assert "skipped broken.mp3" in err  # a bad file is reported, training goes on
    card = json.loads((tmp_path / "m1" / "card.json").read_text())
    assert card["metrics"]["held_out_files"] == {"real": 1, "ai": 1}
    assert card["data"]["files"] == {"real": 8, "ai": 9}
    assert {"weight", "bias"} <= set(card["calibration"])

    # the exported model runs without torch's help and tells unseen files apart
    det = TrainedDetector(tmp_path / "m1")
    from earmark.audio.decode import decode

    p_real = det.score(decode(folders / "unseen_real.flac", SR), SR).probability
    p_ai = det.score(decode(folders / "unseen_ai.flac", SR), SR).probability
    assert p_real.shape == (3,) and p_ai.shape == (3,)
    assert np.mean(p_ai) > np.mean(p_real) + 0.3, (p_ai, p_real)

    reg = Registry(home)
    mid = f"{card['name']}-{card['version']}"
    assert reg.ids() == [BUILTIN, mid] and reg.state().active == BUILTIN

    # shadow: scores beside the active detector, never decides
    assert invoke("models", "shadow", mid, "--db", home)[0] == 0
    code, out, _ = invoke("detect", "--json", "--db", home, folders / "unseen_ai.flac")
    line = json.loads(out)
    assert line["detector"]["name"] == "residue"
    assert line["shadow"]["detector"] == {"name": card["name"], "version": card["version"]}
    assert line["shadow"]["label"] in {"ai", "uncertain", "human"}

    # promote: the model decides; the registry keeps the history
    assert invoke("models", "promote", mid, "--db", home)[0] == 0
    st = reg.state()
    assert st.active == mid and st.shadow is None
    assert [h["action"] for h in st.history] == ["added", "shadow", "promoted"]
    code, out, _ = invoke("detect", "--json", "--db", home, folders / "unseen_ai.flac")
    assert json.loads(out)["detector"]["name"] == card["name"]
    code, out, _ = invoke("models", "list", "--json", "--db", home)
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[mid]["active"] and not rows[BUILTIN]["active"]
    code, out, _ = invoke("models", "show", mid, "--db", home)
    assert json.loads(out)["version"] == card["version"]
    code, _, err = invoke("models", "promote", "no-such-model", "--db", home)
    assert code == 2 and "unknown_detector" in err

    # fine-tune from the model: a new version with its base recorded
    code, out, err = invoke("train", "--real", folders / "real", "--ai", folders / "ai",
                            "--out", tmp_path / "m2", "--base", tmp_path / "m1",
                            "--db", home, "--epochs", "1", "--name", "site2")
    assert code == 0, err
    card2 = json.loads((tmp_path / "m2" / "card.json").read_text())
    assert card2["base"] == str(tmp_path / "m1")
    assert len(Registry(home).ids()) == 3


def test_train_refuses_too_little_data(tmp_path: Path, folders: Path) -> None:
    code, _, err = invoke("train", "--real", folders / "real" / "r0.flac", "--ai",
                          folders / "ai", "--out", tmp_path / "m", "--db", tmp_path)
    assert code == 2 and "at least 5 files" in err


def test_registry_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(UnknownDetector):
        Registry(tmp_path).detector("nothing-here")

# SPDX-License-Identifier: Apache-2.0
"""``earmark train`` and ``earmark models list | show | promote | shadow``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from earmark.cli import DbOption, die, resolve_home, stderr, stdout, user_errors
from earmark.detect.registry import BUILTIN, Registry

app = typer.Typer(help="Detector model versions: list, show, promote, shadow.",
                  no_args_is_help=True)


def train(
    real: Annotated[list[Path], typer.Option("--real", help="Folder (or file) of human-made "
                                             "music; repeat for several.")],
    ai: Annotated[list[Path], typer.Option("--ai", help="Folder (or file) of AI-generated "
                                           "music; repeat for several.")],
    out: Annotated[Path, typer.Option("--out", metavar="MODEL", help="Model folder to write.")],
    base: Annotated[Path | None, typer.Option("--base", metavar="MODEL",
                                              help="Fine-tune from this model folder.")] = None,
    name: Annotated[str, typer.Option(help="Model name (the id adds a version).")] = "site",
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training slices.")] = 6,
    db: DbOption = None,
    register: Annotated[bool, typer.Option(help="Add the model to the registry of --db.")
                        ] = True,
) -> None:
    """Train a detector on labelled folders; print its evaluation on held-out files."""
    from earmark.detect.train import TrainConfig
    from earmark.detect.train import train as run_train

    err = stderr()
    with user_errors():
        card = run_train(TrainConfig(real=real, ai=ai, out=out, base=base, name=name,
                                     epochs=epochs), log=err.print)
        m = card.metrics
        stdout().print(f"held-out evaluation ({m['held_out_files']['real']} real, "
                       f"{m['held_out_files']['ai']} AI files; {m['segments_5s']['real']} + "
                       f"{m['segments_5s']['ai']} segments of 5 s):")
        stdout().print(f"  AUC {m['auc_5s']:.3f}   TPR at 1 % FPR {m['tpr_at_1pct_fpr_5s']:.3f}"
                       f"   accuracy {m['accuracy_at_0.5']:.3f}   ECE {m['ece_5s']:.3f}")
        if register:
            mid = Registry(resolve_home(db)).add(out)
            err.print(f"registered as {mid}; try it beside the active detector with "
                      f"`earmark models shadow {mid}`, make it decide with "
                      f"`earmark models promote {mid}`")


@app.command("train-speech-mask")
def train_speech_mask(
    corpus: Annotated[Path | None, typer.Option(help="Corpus folder with manifest.csv (music "
                                                "of its non-catalog side is used).")] = None,
    out: Annotated[Path, typer.Option(metavar="ONNX", help="Model file to write.")
                   ] = Path("speech_mask.onnx"),
    examples: Annotated[int, typer.Option(min=10, help="Mixtures of 3 s.")] = 3000,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Split seed of `earmark bench identify`.")] = 0,
    arch: Annotated[str, typer.Option(help="dilated (small, CPU-trainable) or harmonic (the "
                                      "shipped one; train it on a GPU).")] = "dilated",
    channels: Annotated[int, typer.Option(min=1)] = 10,
    speech_clips: Annotated[int, typer.Option(min=1, help="espeak-ng utterances.")] = 60,
    flite_clips: Annotated[int, typer.Option(min=0, help="flite utterances (awb, rms, kal16; "
                                             "slt and kal stay held out).")] = 0,
    material: Annotated[Path | None, typer.Option(help="Train from this material file "
                                                  "instead of the corpus and synthesisers.")
                        ] = None,
    material_out: Annotated[Path | None, typer.Option(
        help="Only write the training material (music and speech, 16-bit) to this .npz, to "
             "train where FFmpeg and the synthesisers are not (a GPU machine).")] = None,
    seconds_per_track: Annotated[float, typer.Option(min=5.0, help="With --material-out.")
                                 ] = 60.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(min=1, help="Processes making the examples.")] = 1,
) -> None:
    """Train the speech mask that query fingerprinting uses under talk-over (train extra).

    The shipped model (earmark/identify/speech_mask.onnx, ``harmonic``, 16 channels) was
    made from a material file of the full dev corpus on a GPU (scripts/
    train_speech_mask_gpu.py; its card, speech_mask.json, records how); see
    docs/fingerprint.md. The defaults train the first, small model on a CPU (~18 min).
    """
    from earmark.identify.speech_train import MaskTrainConfig, save_material
    from earmark.identify.speech_train import train as run_train

    with user_errors():
        cfg = MaskTrainConfig(corpus=corpus, out=out, examples=examples, epochs=epochs,
                              seed=seed, arch=arch, channels=channels,
                              speech_clips=speech_clips, flite_clips=flite_clips,
                              material=material, device=device, workers=workers)
        if corpus is None and material is None:
            die("give --corpus (or --material to train from a material file)")
        if material_out is not None:
            if corpus is None:
                die("--material-out needs --corpus")
            size = save_material(cfg, material_out, seconds_per_track)
            stdout().print(json.dumps({"material": str(material_out), "bytes": size}))
            return
        card = run_train(cfg, log=stderr().print)
        stdout().print(json.dumps(card, indent=2))


@app.command("list")
def list_models(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Registered detectors: the built-in and every trained version, active and shadow marked."""
    with user_errors():
        reg = Registry(resolve_home(db))
        st = reg.state()
        rows: list[dict[str, Any]] = []
        for mid in reg.ids():
            card = reg.card(mid)
            rows.append({
                "id": mid, "active": mid == st.active, "shadow": mid == st.shadow,
                "created": None if card is None else card.created,
                "auc_5s": None if card is None else card.metrics.get("auc_5s"),
                "tpr_at_1pct_fpr_5s": None if card is None else
                card.metrics.get("tpr_at_1pct_fpr_5s"),
            })
    if as_json:
        typer.echo(json.dumps(rows))
        return
    t = Table("id", "role", "created", "held-out AUC", "TPR@1 % FPR")
    for r in rows:
        role = "active" if r["active"] else ("shadow" if r["shadow"] else "")
        t.add_row(r["id"], role, r["created"] or "built-in",
                  "—" if r["auc_5s"] is None else f"{r['auc_5s']:.3f}",
                  "—" if r["tpr_at_1pct_fpr_5s"] is None else f"{r['tpr_at_1pct_fpr_5s']:.3f}")
    stdout().print(t)


@app.command("show")
def show(model_id: Annotated[str, typer.Argument(metavar="ID")], db: DbOption = None) -> None:
    """The model card (data, metrics, calibration, limits) as JSON."""
    with user_errors():
        card = Registry(resolve_home(db)).card(model_id)
    if card is None:
        typer.echo(json.dumps({"id": BUILTIN, "name": BUILTIN, "kind": "built-in, no training",
                               "docs": "docs/detect.md"}, indent=2))
        return
    typer.echo(json.dumps(card.__dict__, indent=2))


@app.command("promote")
def promote(model_id: Annotated[str, typer.Argument(metavar="ID")], db: DbOption = None
            ) -> None:
    """Make a model the one that decides (`earmark detect` uses it by default)."""
    with user_errors():
        Registry(resolve_home(db)).promote(model_id)
    stderr().print(f"{model_id} is now active")


@app.command("shadow")
def shadow(
    model_id: Annotated[str | None, typer.Argument(metavar="ID")] = None,
    db: DbOption = None,
    clear: Annotated[bool, typer.Option("--clear", help="Stop shadow scoring.")] = False,
) -> None:
    """Score a model beside the active one without letting it decide."""
    if clear == (model_id is not None):
        die("give a model ID, or --clear")
    with user_errors():
        Registry(resolve_home(db)).set_shadow(None if clear else model_id)
    stderr().print("no shadow model" if clear else f"{model_id} now scores in shadow")

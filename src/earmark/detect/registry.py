# SPDX-License-Identifier: Apache-2.0
"""Model versions of a site: which detector decides (active) and which scores beside it (shadow).

The registry lives in ``$EARMARK_HOME/models/``: one folder per trained model version and
``registry.json`` with the active and shadow model ids and the history of changes. The
built-in ``residue`` detector is always there and is active until another is promoted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from earmark.detect.base import Detector, get_detector
from earmark.detect.trained import ModelCard, ModelError, TrainedDetector
from earmark.errors import UnknownDetector

BUILTIN = "residue"


@dataclass
class RegistryState:
    active: str = BUILTIN
    shadow: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Registry:
    """The model registry of one earmark home."""

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "models"

    @property
    def _file(self) -> Path:
        return self.root / "registry.json"

    def state(self) -> RegistryState:
        try:
            return RegistryState(**json.loads(self._file.read_text()))
        except FileNotFoundError:
            return RegistryState()
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{self._file} is unreadable ({exc}); fix or remove it") from exc

    def _save(self, st: RegistryState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(st), fh, indent=2)
        os.replace(tmp, self._file)  # atomic: a crash leaves the old or the new state

    def ids(self) -> list[str]:
        """Registered model ids, the built-in first."""
        if not self.root.is_dir():
            return [BUILTIN]
        return [BUILTIN, *sorted(p.parent.name for p in self.root.glob("*/card.json"))]

    def card(self, model_id: str) -> ModelCard | None:
        """The card of a trained model (None for the built-in)."""
        if model_id == BUILTIN:
            return None
        folder = self.root / model_id
        if not (folder / "card.json").is_file():
            raise UnknownDetector(f"no model {model_id!r}; registered: {', '.join(self.ids())}")
        return ModelCard.load(folder)

    def add(self, folder: Path) -> str:
        """Copy a trained model folder into the registry; returns its id (name-version)."""
        card = ModelCard.load(folder)
        model_id = f"{card.name}-{card.version}"
        dest = self.root / model_id
        if not dest.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".adding-"))
            for f in ("model.onnx", "model.pt", "card.json"):
                shutil.copy2(folder / f, tmp / f)
            os.replace(tmp, dest)
            self._log("added", model_id)
        return model_id

    def _log(self, action: str, model_id: str | None) -> None:
        st = self.state()
        st.history.append({"at": time.strftime("%F %T"), "action": action, "model": model_id})
        self._save(st)

    def promote(self, model_id: str) -> None:
        """Make ``model_id`` the detector that decides."""
        self.card(model_id)  # must exist
        st = self.state()
        st.history.append({"at": time.strftime("%F %T"), "action": "promoted",
                           "model": model_id, "previous": st.active})
        st.active = model_id
        if st.shadow == model_id:
            st.shadow = None
        self._save(st)

    def set_shadow(self, model_id: str | None) -> None:
        """Score ``model_id`` beside the active detector without deciding (None: no shadow)."""
        if model_id is not None:
            self.card(model_id)
        st = self.state()
        st.history.append({"at": time.strftime("%F %T"), "action": "shadow", "model": model_id})
        st.shadow = model_id
        self._save(st)

    def detector(self, model_id: str | None = None) -> Detector:
        """The detector of ``model_id`` (default: the active one)."""
        mid = model_id or self.state().active
        if not (self.root / mid / "card.json").is_file():
            try:
                return get_detector(mid)  # another built-in or an entry point
            except UnknownDetector:
                raise UnknownDetector(f"no model or detector {mid!r}; registered: "
                                      f"{', '.join(self.ids())}") from None
        return TrainedDetector(self.root / mid)

    def shadow_detector(self) -> Detector | None:
        sid = self.state().shadow
        return None if sid is None else self.detector(sid)

"""Files shipped inside the package: the built-in default model.

``default_model.safetensors`` is produced by ``scripts/train_default_model.py`` with
``cellclass train`` on synthetic phase-contrast data.  It is a demonstration model,
not a validated classifier; its model card says so.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_FILE = "default_model.safetensors"


def default_model_path() -> Path:
    """Path of the built-in model; a clear error if this installation lacks it."""
    from ..core.errors import ModelFileError

    path = Path(__file__).with_name(DEFAULT_MODEL_FILE)
    if not path.is_file():
        raise ModelFileError(
            f"the built-in default model is missing from this installation ({path})",
            "reinstall napari-cellclass, run scripts/train_default_model.py to rebuild it, or choose a model file",
        )
    return path

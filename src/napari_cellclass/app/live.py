"""Live mode's work, without Qt or napari: retrain the head after a label, preview the result.

Live mode (``widgets.live_mode``) runs the fine-tune panel's own job head-only
(:func:`live_options`), so its backbone features come from
``core.training.feature_cache``: after the first run only a new image's features are
computed, and the before/after comparison reads the cache too.  Its model is
*pending*, like any fine-tune result: it re-classifies the open images and re-ranks
"what to label next" through a :func:`preview_session`, while Keep / Undo alone decide
the session's model.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..core.progress import Progress
from .finetune_jobs import StartChoice, finetune_job
from .session import ModelChoice, Session

if TYPE_CHECKING:
    from ..core.annotations import AnnotationStore
    from ..core.models.bundle import ModelBundle
    from ..core.training.finetune import FineTuneOptions

#: views of each image the live head trains on (identity + horizontal flip): two forward
#: passes per new label, whatever flips the panel's augmentation would draw
LIVE_VIEWS = 2


@dataclass(frozen=True)
class LiveSkip:
    """A live retrain that could not run yet (e.g. one class has no labels): why."""

    message: str


def live_options(options: FineTuneOptions) -> FineTuneOptions:
    """The panel's options made head-only (frozen backbone, cached views) with one split that a new
    label barely changes (so only the new label's features are computed)."""
    return replace(options, freeze_fraction=1.0, two_stage=False, folds=0, feature_cache=True,
                   cache_views=LIVE_VIEWS if options.augment else 0, stable_split=True)


def labels_fingerprint(store: AnnotationStore) -> str:
    """Changes whenever what a model would learn from changes: the classes or any labelled item."""
    h = hashlib.blake2b(repr(store.class_names).encode(), digest_size=16)
    for it in store.items:
        h.update(repr(it).encode())
    return h.hexdigest()


def live_job(session: Session, store: AnnotationStore, options: FineTuneOptions, stop: threading.Event
             ) -> Generator[Progress, None, Any]:
    """Retrain the head of the session's model on ``store``; returns the FineTuneOutcome, or a
    :class:`LiveSkip` when the labels cannot train a model yet (live mode waits for more)."""
    from ..core.errors import DataError

    try:
        return (yield from finetune_job(session, store, StartChoice("model"), live_options(options), stop))
    except DataError as err:
        return LiveSkip(str(err))


def reusing_features(job: Callable[..., Generator[Progress, None, Any]]) -> Callable[..., Generator[Progress, None, Any]]:
    """``job`` (the Classify or the ranking job) run inside ``reuse_features``: images whose pixels
    did not change since a live model last saw them are re-classified by the new head on their
    cached backbone features, with no backbone pass (the live head is all that changes)."""
    from ..core.models.feature_store import reuse_features

    def run(*args: Any, **kwargs: Any) -> Generator[Progress, None, Any]:
        with reuse_features():  # per thread: the worker that runs this generator
            return (yield from job(*args, **kwargs))

    run.__name__ = getattr(job, "__name__", "job")
    return run


def preview_session(session: Session, bundle: ModelBundle) -> Session:
    """A session whose model is ``bundle`` (same settings and device), for re-classifying and
    re-ranking with a model that is not the session's yet; ``session`` itself is untouched."""
    preview = Session(session.settings)
    preview.device = session.device
    preview.fine_tuned = bundle
    preview.choice = ModelChoice("fine-tuned")  # set directly: set_choice would write the settings
    return preview


__all__ = ["LIVE_VIEWS", "LiveSkip", "labels_fingerprint", "live_job", "live_options", "preview_session",
           "reusing_features"]

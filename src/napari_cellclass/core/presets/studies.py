"""The five studies as named presets: architecture + preprocessing + training recipe.

Every number here is the paper's own (see RECIPES.md); where a paper is silent we
say so in ``notes`` and pick a conservative default.  A preset is plain data: the
model builder reads ``arch``/``preprocess``/``output``, the training loop reads
``train``.  Everything is overridable by the caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import ArchitectureError
from ..models.heads import HeadSpec
from ..data.augment import Augment
from ..models.registry import ARCHITECTURES
from ..models.spec import ArchSpec, ensemble_spec, with_head
from ..io.preprocess import Normalization, Preprocess
from .recipe import Stage, TrainRecipe


@dataclass(frozen=True)
class Preset:
    name: str
    study: str
    description: str
    arch: ArchSpec
    preprocess: Preprocess
    output: str  # softmax | sigmoid | binary
    in_chans: int
    channel_names: tuple[str, ...]
    classes: tuple[str, ...]
    pretrained: bool
    train: TrainRecipe
    reported: str
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        d["preprocess"] = self.preprocess.to_dict()
        return d


def _timm(name: str, head: HeadSpec) -> ArchSpec:
    return with_head(ARCHITECTURES[name].spec, head)


_RGB = ("red", "green", "blue")
_CELL_LINES = (
    "COLO-704", "COLO-704rCDDP1000", "EFO-21", "EFO-21rCDDP2000",
    "EFO-27", "EFO-27rCDDP2000", "UKF-NB-3", "UKF-NB-3rOXALI4000",
)
_NLO = ("SRS-lipids", "TPEF", "transmission")
_PROTEIN_CHANNELS = ("protein", "nucleus", "microtubules", "ER")
_COMPARTMENTS = (
    "actin filaments", "centrosome", "cytosol", "endoplasmic reticulum", "golgi apparatus",
    "intermediate filaments", "microtubules", "mitochondria", "nuclear membrane", "nucleoli",
    "nucleus", "plasma membrane", "vesicles",
)
_SEN_MEMBERS = ("inception_v3", "efficientnet_b4", "densenet121", "resnet50",
                "mobilenetv2_100", "legacy_xception", "inception_resnet_v2")
_SEN_HEAD = HeadSpec(pool="max", hidden=(4,), hidden_dropout=0.8, dropout=0.0)
_SEN_PRE = Preprocess((224, 224), "squash", "bilinear", Normalization("percentile", mean=(0.45,) * 3, std=(0.225,) * 3))
_SEN_TRAIN = TrainRecipe(
    epochs=200, batch_size=20, optimizer="adam", lr=5e-4,
    early_stopping_patience=20, min_delta=0.005,
    stages=(Stage("head", 5e-4), Stage("all", 2e-5)), head_l1l2=0.01,
    augment=Augment(hflip=True, vflip=True, rot90=True, rotate_deg=20.0, shift=0.1, fill="constant"),
    val_fraction=0.15, separate_member_augmentation=True,
)
_SEN_REPORTED = "fully trained 7-model ensemble: accuracy 90.1 %, F1 90.8 %, AUC 0.960; 24 ms/image on an RTX 3090"

PRESETS: dict[str, Preset] = {}


def _add(p: Preset) -> None:
    PRESETS[p.name] = p


_add(Preset(
    name="cell-line-authentication", study="Mzurikwao et al. 2020, Sci. Rep.",
    description="8 parental and drug-adapted cancer cell lines from phase-contrast RGB images",
    arch=_timm("inception_resnet_v2", HeadSpec(pool="avg")),
    preprocess=Preprocess((299, 299), "squash", "bilinear", Normalization("meansub")),
    output="softmax", in_chans=3, channel_names=_RGB, classes=_CELL_LINES, pretrained=True,
    train=TrainRecipe(
        epochs=30, batch_size=16, optimizer="adam", lr=1e-4, early_stopping_patience=10,
        augment=Augment(shift=0.2, width_shift_only=True, fill="nearest"), val_fraction=0.1, cv_folds=10,
    ),
    reported="8-class F1 0.91 ± 0.03, AUC 0.95 (10-fold CV); parental 4-class 0.96; pairs 0.90-0.98",
    notes="Epochs, optimiser and learning rate are not given in the paper (our defaults). "
    "MobileNet variant: arch mobilenetv2_100 at 224x224.",
))
_add(Preset(
    name="scaffoldnet-brightfield", study="Akogo & Palmer 2019",
    description="binary MDA-MB-468 vs MCF7 from greyscale brightfield tiles, ScaffoldNet from scratch",
    arch=ARCHITECTURES["scaffoldnet"].spec,
    preprocess=Preprocess((128, 128), "squash", "bilinear", Normalization("image_std")),
    output="binary", in_chans=1, channel_names=("brightfield",), classes=("MDA-MB-468", "MCF7"), pretrained=False,
    train=TrainRecipe(
        epochs=8, batch_size=32, optimizer="adam", lr=1e-3, keep_best=True,
        augment=Augment(hflip=True, rotate_deg=5.0, shift=0.1, zoom=0.1, fill="nearest"),
        val_fraction=0.1, test_fraction=0.1,
    ),
    reported="test accuracy 99.0 %, ROC AUC 0.98",
))
_add(Preset(
    name="efficientnetv2-fluorescence", study="Kakumani & Padma Sree",
    description="3 breast cell lines (MCF-10A, MCF-7, MDA-MB-231) from confocal actin images",
    arch=_timm("tf_efficientnetv2_b0", HeadSpec(pool="avg")),
    preprocess=Preprocess((224, 224), "squash", "bilinear", Normalization("divide", divisor=255.0)),
    output="softmax", in_chans=3, channel_names=_RGB, classes=("MCF-10A", "MCF-7", "MDA-MB-231"), pretrained=True,
    train=TrainRecipe(
        epochs=70, batch_size=16, optimizer="adam", lr=5e-5, freeze_fraction=200 / 271,
        augment=Augment(hflip=True, vflip=True, zoom=0.2, shear_deg=10.0, shift=0.1, rotate_deg=20.0, fill="nearest"),
        val_fraction=0.1, test_fraction=0.1,
    ),
    reported="accuracy 98.15 %, precision 98.33 %, recall 98.15 %, F1 98.14 %",
    notes="First 200 of 271 Keras layers frozen: we freeze the same leading fraction of the backbone's layers.",
))
_add(Preset(
    name="senescence-ensemble", study="Sorrentino et al. 2023",
    description="senescent vs proliferating cells, 3-channel NLO images, 7-backbone soft-voting ensemble",
    arch=ensemble_spec([_timm(m, _SEN_HEAD) for m in _SEN_MEMBERS], vote="soft"),
    preprocess=_SEN_PRE, output="binary", in_chans=3, channel_names=_NLO,
    classes=("proliferating", "senescent"), pretrained=True, train=_SEN_TRAIN, reported=_SEN_REPORTED,
    notes="Fully trained variant (both stages). Backbones see the percentile-scaled NLO channels as RGB.",
))
_add(replace(
    PRESETS["senescence-ensemble"], name="senescence-ensemble:frozen",
    description="senescence ensemble with frozen backbones (head-only training)",
    train=replace(_SEN_TRAIN, stages=(Stage("head", 5e-4),)),
    reported="frozen 7-model ensemble: accuracy 85.8 %",
))
_add(replace(PRESETS["senescence-ensemble"], name="senescence-ensemble:fully-trained"))
_add(replace(
    PRESETS["senescence-ensemble"], name="senescence-ensemble:scratch-cnn",
    description="senescence, from-scratch CNN 6/12/24 filters",
    arch=ARCHITECTURES["senescence_cnn"].spec,
    preprocess=replace(_SEN_PRE, input_size=(250, 300), normalization=Normalization("percentile")),
    pretrained=False, train=replace(_SEN_TRAIN, stages=(), lr=1e-3, separate_member_augmentation=False),
    reported="accuracy 71.5 %",
))
_add(replace(
    PRESETS["senescence-ensemble"], name="senescence-ensemble:hybrid-svm",
    description="senescence, frozen backbone features → PCA → polynomial SVM, hard vote over 7 backbones",
    arch=ensemble_spec([_timm(m, _SEN_HEAD) for m in _SEN_MEMBERS], vote="hard"),
    train=replace(_SEN_TRAIN, stages=(), epochs=0),
    reported="hybrid PCA+SVM hard vote: accuracy 85.4 %",
    notes="Training replaces each member's head by PCA + polynomial SVM fitted with scikit-learn (CV-tuned).",
))
_PROTEIN_PRE = Preprocess((256, 256), "squash", "nearest", Normalization("percentile", p_low=0.0, p_high=99.9))
_PROTEIN_TRAIN = TrainRecipe(
    epochs=100, batch_size=64, optimizer="adam", lr=1e-3, schedule="plateau", plateau_factor=1 / 3,
    plateau_patience=8, early_stopping_patience=20, augment=Augment(hflip=True, vflip=True, rot90=True),
    val_fraction=0.1, test_fraction=0.2, threshold_step=0.01,
)
_add(Preset(
    name="protein-localization-cnn", study="Liimatainen et al. 2021",
    description="13-compartment multi-label protein localisation, 4-channel confocal, CNN",
    arch=ARCHITECTURES["protein_cnn"].spec, preprocess=_PROTEIN_PRE, output="sigmoid", in_chans=4,
    channel_names=_PROTEIN_CHANNELS, classes=_COMPARTMENTS, pretrained=False, train=_PROTEIN_TRAIN,
    reported="mean per-class correct rate 0.676, mean Dice 0.705",
))
_add(Preset(
    name="protein-localization-fcn", study="Liimatainen et al. 2021",
    description="13-compartment multi-label protein localisation, 4-channel confocal, FCN with heat maps",
    arch=ARCHITECTURES["protein_fcn"].spec, preprocess=_PROTEIN_PRE, output="sigmoid", in_chans=4,
    channel_names=_PROTEIN_CHANNELS, classes=_COMPARTMENTS, pretrained=False,
    train=replace(_PROTEIN_TRAIN, fcn_target={"channel": 0, "sigma": 2.0, "threshold": 0.3, "dilate": 2}),
    reported="mean per-class correct rate 0.696, mean Dice 0.707; 41 % vs 25 % on 3-label images",
))


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ArchitectureError(f"unknown preset {name!r}", f"presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def list_presets() -> list[dict[str, Any]]:
    return [
        {"name": p.name, "study": p.study, "description": p.description, "architecture": p.arch.describe(),
         "input_size": list(p.preprocess.input_size), "classes": len(p.classes), "reported": p.reported}
        for p in PRESETS.values()
    ]

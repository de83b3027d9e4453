"""Annotations made in the viewer: classes, image/region/pixel labels, written through.

>>> store = AnnotationStore.open("plate1/annotations.json")          # doctest: +SKIP
>>> store.add_class("healthy"); store.add_class("senescent")         # doctest: +SKIP
>>> key = store.add_image(layer.data, path=layer.source.path)        # doctest: +SKIP
>>> store.apply_key(key, frame=0, key="2")                           # doctest: +SKIP
>>> samples = training_samples(store)                                # doctest: +SKIP

Every change is written to the JSON file atomically (temporary file in the same
folder, flush + fsync, ``os.replace``) before the call returns, so killing the
process at any moment leaves the previous or the new complete file.

File format ``napari-cellclass-annotations``, version 1 (UTF-8 JSON; also in
docs/annotations.md)::

    {
     "format": "napari-cellclass-annotations",   # anything else is refused, untouched
     "version": 1,                                # newer versions are refused, untouched
     "created": "2025-01-31T09:12:44.120Z",       # ISO 8601, UTC
     "modified": "2025-01-31T09:30:02.001Z",
     "multilabel": false,       # may an image carry several image-level labels?
     "next_id": 8,              # next item id (ids of deleted items are not reused)
     "next_color": 3,           # next default colour index (colours never shift)
     "classes": [               # order = keyboard shortcuts 1..9 = class index in exports
      {"name": "healthy", "color": "#E69F00"}, ...
     ],
     "images": {                # key -> where the pixels are and what they were
      "well_A01": {
       "path": "raw/well_A01.tif",  # relative to this file's folder, or absolute
       "name": "well_A01.tif",      # layer name shown to the user
       "origin": "file",            # "file": the user's; "memory": saved by us to images/<key>.tif
       "shape": [512, 512, 3], "dtype": "uint8",
       "channel_axis": 2,           # resolved once (null: greyscale / stack of greyscale)
       "hash": "blake2b:…",         # of the file's bytes ("memory": of dtype, shape, pixels)
       "size": 786650, "mtime_ns": 1706692364000000000   # cheap change detection
      }
     },
     "items": [                 # one per line; coordinates are image pixels (row y, column x),
                                # pixel centres at integers, as in a napari layer with unit scale
      {"id":1,"kind":"image","image":"well_A01","frame":0,"labels":["healthy"],"created":"…"},
      {"id":2,"kind":"rectangle",…,"labels":["senescent"],"box":[y0,x0,y1,x1]},
      {"id":3,"kind":"polygon",…,"vertices":[[y,x],[y,x],[y,x]]},
      {"id":4,"kind":"point",…,"center":[y,x],"size":[h,w]},
      {"id":5,"kind":"pixels",…,"labels":["healthy","senescent"],
       "mask":"annotations.masks/well_A01-f0-a.tif", "values":{"1":"healthy","2":"senescent"}}
     ]
    }

``frame`` is the plane of a stack (0 for single images).  Image-level items are one
per (image, frame); re-labelling replaces the item.  Region items carry one class.
A pixel item's mask is a zlib-compressed uint8 (uint16 from 256 classes on) TIFF of
the plane's height x width: 0 = unlabelled, other values mapped to class names by
``values`` (so renaming and reordering classes never rewrites masks).
"""

from __future__ import annotations

from ..io.crops import PAD_MODES, crop_box, crop_item, crop_point, crop_polygon
from .export import ExportReport, TrainingSample, export_dataset, training_samples
from .imagerefs import ImageProblem
from .palette import default_color, hex_to_rgba
from .schema import (FORMAT, VERSION, AnnotationFileError, AnnotationSaveError, ClassInfo, ImageRecord, Item)
from .store import AnnotationStore, AnnotationWarning
from .table import ItemRow

open_annotations = AnnotationStore.open

__all__ = [
    "FORMAT", "VERSION", "PAD_MODES", "AnnotationStore", "AnnotationWarning", "AnnotationFileError",
    "AnnotationSaveError", "ClassInfo", "ImageRecord", "Item", "ItemRow", "ImageProblem", "TrainingSample",
    "ExportReport", "export_dataset", "training_samples", "open_annotations", "crop_box", "crop_polygon",
    "crop_point", "crop_item", "default_color", "hex_to_rgba",
]

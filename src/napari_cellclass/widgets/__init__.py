"""napari dock widgets (Qt side). Thin shells over core; see DESIGN.md."""

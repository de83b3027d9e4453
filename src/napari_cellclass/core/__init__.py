"""Headless engine of napari-cellclass.

Nothing in this package imports Qt, napari or magicgui (a test enforces it), so the
CLI, scripts and tests can do everything the widgets can.  Sub-modules are imported
explicitly; this file stays empty so importing ``core`` costs nothing.
"""

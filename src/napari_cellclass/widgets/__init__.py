"""napari dock widgets of napari-cellclass.

Importing this package imports nothing; each dock lives in its own module
(``classify``, ``explain``) and shares a :class:`~.session.Session` with the others.
"""

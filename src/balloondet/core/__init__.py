"""The ground floor: what every layer above uses, with no model and no upstream library in it.

- ``errors``: the package's error classes (the CLI prints any ``BalloonDetError`` as one line).
- ``defaults``: every default that several layers share, defined once.
- ``files``: paths as printed output shows them, atomic writes, JSON in and out.
- ``classes``: the class list's one home, the converted data set's categories (and a palette for them).
- ``images``: images as mmcv's loader sees them, figures saved small enough for a README page.
- ``console``: the progress bar, and the quiet console that notebooks train under.
"""

"""Jobs that call several steps.

- ``readme_figures``: every README figure from a run's work dir (the `figures` verb).
- ``notebooks``: run.ipynb then analyse.ipynb, top to bottom (the `notebooks` verb, the main job).
"""

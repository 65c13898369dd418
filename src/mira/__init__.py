"""mira: source-aware, rubric-anchored selection of LLM mid-training data (MIRA).

Importing mira does no work: models, servers and heavy libraries load inside the functions
that need them. The Python API is :mod:`mira.api`; the CLI (`mira`) is a thin layer over it.
"""

__version__ = "0.1.0"

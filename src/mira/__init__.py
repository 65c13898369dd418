"""mira: source-aware, rubric-anchored selection of LLM mid-training data (MIRA).

Importing mira does no work: models, servers and heavy libraries load inside the functions
that need them. The Python API is :mod:`mira.api`; the CLI (`mira`) is a thin layer over it.
``mira.Scorer`` (:mod:`mira.scoring.scorer`) applies a finished run's students to records of
your own pipeline; it is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mira.scoring.scorer import Scorer

__version__ = "0.1.0"
__all__ = ["Scorer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Scorer":  # imported on first use: `import mira` stays cheap
        from mira.scoring.scorer import Scorer

        return Scorer
    raise AttributeError(f"module 'mira' has no attribute {name!r}")

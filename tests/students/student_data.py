"""Real texts with planted labels, shared by the student and distill tests.

The texts are real Python stdlib modules (present wherever Python is); the labels are planted:
``signal`` is a function of a structural property (the share of comment lines), ``noise`` is
random. A student must learn the first and a reliability mask must reject the second.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np


def stdlib_texts(n: int, chars: int = 2_000) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        # Several windows per file: a file's header is all comments, its body all code.
        for start in range(0, max(len(text) - chars, 1), chars * 3):
            piece = text[start:start + chars]
            if len(piece) > 200:
                texts.append(piece)
        if len(texts) >= n:
            break
    return texts[:n]


def comment_share(text: str) -> float:
    lines = text.split("\n")
    return sum(1 for line in lines if line.strip().startswith("#")) / len(lines)


def planted_labels(texts: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(signal, noise) targets on 0..10."""
    from scipy.stats import rankdata

    share = np.array([comment_share(t) for t in texts])
    ranks = (rankdata(share) - 1) / max(len(texts) - 1, 1)  # ties (no comment at all) share a label
    signal = np.round(10 * ranks, 2)  # monotone in the comment share, spread over the scale
    noise = np.random.default_rng(seed).uniform(0, 10, len(texts)).round(2)
    return signal, noise

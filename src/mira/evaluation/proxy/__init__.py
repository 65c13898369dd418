"""Proxy training: does a selection help a model learn? (issue 12, `mira compare` with proxy on).

A small byte-level causal transformer is trained from scratch on the same byte budget drawn from each
selection, for several seeds, and evaluated in bits per byte on held-out sets; :func:`verdict` says
whether two methods differ beyond seed noise. Settings: :class:`mira.core.config.ProxyConfig`.

    from mira.core.config import ProxyConfig
    from mira.evaluation.proxy import train_proxy, verdict
    result = train_proxy(texts, {"heldout": heldout_texts}, ProxyConfig(), seed=0)
    result.eval["heldout"].bpb; ProxyResult.from_json(result.to_json())

Importing this package does not import torch; :func:`train_proxy` does.
"""

from mira.artifacts.proxy import EvalScore, ProxyResult, bits_per_byte
from mira.evaluation.proxy.train import train_proxy
from mira.evaluation.proxy.verdict import verdict

__all__ = ["EvalScore", "ProxyResult", "bits_per_byte", "train_proxy", "verdict"]

"""The dry run prices the teacher's new requests in tokens and, with teacher.price_per_mtok, in money."""

from __future__ import annotations

import re

from mira.core.config import TokenPrices
from mira.core.stages import STAGES
from mira.pipeline.plan import plan
from tests.conftest import DATA, make_config


def _config(tmp_path, prices=None):
    config = make_config(tmp_path, [{"name": "py", "path": str(DATA / "group_discover" / "py_code.jsonl")}])
    config.teacher.price_per_mtok = prices
    return config


def _numbers(line: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"[\d,]+(?:\.\d+)?", line)]


def test_the_dry_run_prints_token_totals_and_their_price(tmp_path):
    lines = plan(_config(tmp_path), list(STAGES))
    tokens = [line for line in lines if line.startswith("  teacher tokens: ")]
    assert len(tokens) == 2 and "cost" not in " ".join(lines)  # discover and annotate; no price set
    priced = plan(_config(tmp_path, TokenPrices(input=2.5, output=10.0)), list(STAGES))
    costs = [line for line in priced if line.startswith("  teacher tokens: ")]
    assert [line.split(";")[0] for line in costs] == tokens
    total = 0.0
    for line in costs:
        prompt, output, cost = _numbers(line.split(" (")[0]) + _numbers(line.split("cost about ")[1])[:1]
        assert cost == round((prompt * 2.5 + output * 10.0) / 1e6, 2) > 0
        total += (prompt * 2.5 + output * 10.0) / 1e6
    assert priced[-1].endswith(f"; teacher cost about {total:,.2f}")

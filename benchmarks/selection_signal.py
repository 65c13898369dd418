"""Does a finished run's selection carry the teacher's signal? Figures from its run directory alone.

    python benchmarks/selection_signal.py RUN_DIR [RUN_DIR ...] [--corpus demo-data]

Per run (e.g. `make demo` under three `annotation.seed` values):
- the share of the usable tokens ranked by a reliable score (the rest fell back to random);
- per group: the labels, the student, the aggregate's within-source Spearman out of fold (and its
  lower bound), the length-only student's, the confirmation slice's, and the verdict;
- among the agent records the teacher never labelled, the share of planted degraded trajectories
  the selection kept, against the share of real ones (`demo_perturbation` in the demo corpus).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--corpus", type=Path, default=Path("demo-data"),
                        help="the demo corpus (for the planted defects of bfcl_agent.jsonl)")
    args = parser.parse_args()
    import pyarrow.parquet as pq

    degraded = {}
    agent_file = args.corpus / "bfcl_agent.jsonl"
    if agent_file.exists():
        for line in agent_file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            degraded[row["id"]] = row.get("demo_perturbation") is not None
    for run in args.runs:
        current = (run / "selection" / "_current").read_text().strip() if (run / "selection" / "_current").exists() \
            else "mira-group-50pct"
        summary = json.loads((run / "selection" / current / "summary.json").read_text())
        totals = summary["totals"]
        usable = totals["tokens_in"]
        unscored = totals.get("unscored_tokens", 0)
        print(f"{run}: {1 - unscored / usable:.1%} of {usable:,} tokens ranked by a reliable score "
              f"({unscored:,} random)")
        groups = json.loads((run / "groups.json").read_text())
        for group in groups["groups"]:
            gid = group["id"]
            mask_path, metrics_path = run / "students" / gid / "mask.json", run / "students" / gid / "metrics.json"
            if not mask_path.exists():
                print(f"  {gid}: no student")
                continue
            mask, metrics = json.loads(mask_path.read_text()), json.loads(metrics_path.read_text())
            agg = mask.get("aggregate") or {}
            conf = agg.get("confirmation") or {}
            print(f"  {gid} ({', '.join(group['sources'])}): {metrics.get('train_rows')} train rows, "
                  f"{metrics.get('regressor')}; aggregate within sources {agg.get('spearman')} (n_eff "
                  f"{agg.get('n_eff')}, lower {agg.get('lower')}), length {agg.get('length_spearman')}, "
                  f"confirmation {conf.get('spearman')} (n_eff {conf.get('n_eff')}): {agg.get('status')}")
        labels = run / "labels"
        labelled = set()
        for path in labels.glob("*.parquet"):
            labelled |= set(pq.read_table(path, columns=["record_id"])["record_id"].to_pylist())
        decisions = run / "selection" / current / "_decisions" / "bfcl_agent"
        if degraded and decisions.exists():
            rows = [r for p in sorted(decisions.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
            unl = [r for r in rows if r["id"] not in labelled and r["id"] in degraded]
            bad = [r for r in unl if degraded[r["id"]]]
            good = [r for r in unl if not degraded[r["id"]]]
            kept_bad = sum(r["kept"] for r in bad) / max(len(bad), 1)
            kept_good = sum(r["kept"] for r in good) / max(len(good), 1)
            print(f"  agent records never labelled: degraded kept {kept_bad:.0%} of {len(bad)}, "
                  f"real kept {kept_good:.0%} of {len(good)}")


if __name__ == "__main__":
    main()

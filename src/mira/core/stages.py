"""The pipeline's stages by name (no imports: the CLI builds its commands from this list at start-up)."""

from __future__ import annotations

# The one list of stages, in run order, with what each does (the CLI's help): each is the module
# mira.stages.<name>, and _done/<name>.json is its done marker.
STAGE_HELP = {
    "ingest": "Read every source, detect formats, count tokens, quarantine bad records.",
    "group": "Embed a sample per source and cluster the sources into groups.",
    "discover": "Phase 1: free-form teacher judgments clustered into anchor rubrics per group.",
    "annotate": "Phase 2: the teacher scores a sample on every anchor of its group.",
    "distill": "Train and validate one student scorer per group; reliability masks.",
    "score": "Score the whole corpus with the students (local or Ray engine).",
    "select": "Keep the best records within each group under the token budget.",
    "report": "Write report/index.html: what was decided and why.",
}
STAGES = tuple(STAGE_HELP)

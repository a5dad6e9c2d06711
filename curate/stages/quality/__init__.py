"""Quality filtering: heuristic filters (Gopher, C4, FineWeb) and fastText quality classifiers."""

from curate.stages.quality.heuristics import QualityParams, QualityStage

__all__ = ["QualityParams", "QualityStage"]

"""curate: streaming command-line toolkit that turns raw text corpora into pretraining data."""

__version__ = "0.1.0"

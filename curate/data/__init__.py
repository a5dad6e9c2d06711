"""Data files shipped with curate (per-language quality settings, ...)."""

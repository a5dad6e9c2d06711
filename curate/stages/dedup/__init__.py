"""Deduplication: exact (hashed keys) and MinHash-LSH near-duplicates, out of core; FineWeb2 rehydration."""

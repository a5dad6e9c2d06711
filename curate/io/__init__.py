"""The shared I/O layer: every stage reads inputs and writes outputs through it (never on its own)."""

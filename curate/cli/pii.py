"""`curate pii`: FineWeb's PII step (e-mail and public IP addresses replaced by decoys)."""

from __future__ import annotations

import typer

from curate.cli.common import stage_command
from curate.io.options import IOOptions
from curate.stages.pii import PiiParams, PiiStage

# one command: typer makes the app that command itself, so `curate pii INPUT... -o OUT` needs no sub-command
app = typer.Typer(rich_markup_mode=None)

EXAMPLES = """Examples:

\b
  curate pii dedup-out/ -o out/pii
  curate pii data/ -o out --mode annotate            # keep the text, add pii_emails and pii_ips
  curate pii data/ -o out --all-ips --no-emails      # private addresses too, e-mails untouched
  curate pii data/ -o out --ip-replacements 192.0.2.1,198.51.100.1
"""


@stage_command(
    app,
    "run",
    PiiParams,
    help=(
        "Replace e-mail addresses and public IPv4 addresses with datatrove's regexes and decoys; the decoy "
        "rotation starts at a hash of each document's id, so output does not depend on --workers or tasks."
    ),
    examples=EXAMPLES,
    recipe="pii",
)
def pii(params: PiiParams, io: IOOptions) -> dict:
    from curate.runner import run_map_stage

    return run_map_stage(PiiStage(params), io)

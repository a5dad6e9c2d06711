"""Main-text extraction from crawled HTML: WARC records (or an HTML column) in, documents out.

Only HTTP 200 ``response`` records with an HTML content type are extracted; every other record is counted
by reason (``not_response``, ``status_not_200``, ``not_html``), and so are pages that give no text
(``no_text``), too little (``too_short``), make the extractor fail (``extractor_error``) or run past
``--timeout`` (``timeout``). Two real extractors:

- ``resiliparse`` (default): ``extract_plain_text(main_content=True, alt_texts=False, comments=False,
  post_meta=False)``, about 20× faster than trafilatura; these settings keep boilerplate under a quarter
  of the gold snippets where resiliparse's plain ``main_content=True`` keeps 32% (docs/extract.md).
- ``trafilatura``: FineWeb's call, ``extract(html, favor_precision=True, include_comments=False,
  deduplicate=True)``, as datatrove's ``Trafilatura`` extractor makes it. Its ``deduplicate`` remembers
  text segments across pages; the memory is cleared at the start of every unit (one WARC file), so a page's
  text depends on its file only, not on --workers or array tasks.

The title comes from resiliparse's parse of the page for both extractors (``<title>``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.io.warc import DEFAULT_MAX_PAYLOAD
from curate.params import option
from curate.stages.base import MapStage, StageOutput, UnitContext

HTML_TYPES = ["text/html", "application/xhtml+xml"]
TEXT = "text"
RESILIPARSE_SETTINGS = {"main_content": True, "alt_texts": False, "comments": False, "post_meta": False}
TRAFILATURA_SETTINGS = {"favor_precision": True, "include_comments": False, "deduplicate": True}
_RECORD_COLUMNS = ("warc_type", "truncated")  # what the WARC reader adds that is no part of a document


@dataclass
class ExtractParams:
    extractor: str = option("resiliparse", "resiliparse (fast) or trafilatura (FineWeb's extractor).",
                            choices=["resiliparse", "trafilatura"])
    html_column: str = option("html", "Parquet/JSON-lines inputs: the column holding the HTML (WARC: html).")
    keep_html: bool = option(False, "Also write the HTML (column html).")
    min_chars: int = option(0, "Drop pages whose extracted text has fewer characters (reason too_short).")
    max_html_bytes: int = option(DEFAULT_MAX_PAYLOAD, "Read at most this many bytes of a page (the rest is skipped unread).")
    timeout: float = option(10.0, "Seconds one page may spend in the extractor (0: no limit); a page past it "
                            "is dropped (reason timeout).")


class _Timeout(Exception):
    pass


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise _Timeout in this thread after ``seconds`` (a real-time timer; main thread only, else no limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _resiliparse() -> Callable[[str], tuple[str | None, str | None]]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    def extract(html: str) -> tuple[str | None, str | None]:
        tree = HTMLTree.parse(html)
        return extract_plain_text(tree, **RESILIPARSE_SETTINGS), tree.title or None

    return extract


def _trafilatura() -> Callable[[str], tuple[str | None, str | None]]:
    from resiliparse.parse.html import HTMLTree
    from trafilatura import extract as trafilatura_extract

    def extract(html: str) -> tuple[str | None, str | None]:
        return trafilatura_extract(html, **TRAFILATURA_SETTINGS), HTMLTree.parse(html).title or None

    return extract


class ExtractStage(MapStage):
    """Main text and title of each HTML page; non-pages and pages without text are counted and dropped."""

    name = "extract"
    output_text = TEXT
    empty_hint = "--html-column and the inputs' content types"

    def __init__(self, params: ExtractParams):
        super().__init__(params)
        if params.max_html_bytes < 1 or params.min_chars < 0 or params.timeout < 0:
            raise UsageError("--max-html-bytes must be ≥ 1, --min-chars and --timeout ≥ 0")
        self.max_payload = params.max_html_bytes
        self.input_text = params.html_column
        self.extract: Callable[[str], tuple[str | None, str | None]] | None = None

    def __getstate__(self) -> dict:  # the extractor is made again in each worker process
        return {**self.__dict__, "extract": None}

    def setup(self) -> None:
        self.extract = _trafilatura() if self.params.extractor == "trafilatura" else _resiliparse()

    def run_unit(self, unit: Any, context: UnitContext) -> tuple[list, dict]:
        if self.params.extractor == "trafilatura":
            from trafilatura.meta import reset_caches

            reset_caches()  # deduplicate's memory of seen segments: a page's text depends on its file only
        return super().run_unit(unit, context)

    def _candidates(self, batch: pa.RecordBatch) -> tuple[pa.Array, dict[str, int]]:
        """Which rows are HTML pages to extract, and how many of the others each reason removes."""
        keep = pa.array([True] * batch.num_rows, pa.bool_())
        removed: dict[str, int] = {}
        names = batch.schema.names
        tests = []
        if "warc_type" in names:
            tests.append(("not_response", pc.equal(batch.column("warc_type"), "response")))
        if "status" in names:
            tests.append(("status_not_200", pc.equal(batch.column("status"), 200)))
        if "content_type" in names:
            tests.append(("not_html", pc.is_in(pc.utf8_lower(batch.column("content_type")), pa.array(HTML_TYPES))))
        for reason, passes in tests:
            passes = pc.fill_null(passes, False)
            removed[reason] = pc.sum(pc.and_(keep, pc.invert(passes))).as_py() or 0
            keep = pc.and_(keep, passes)
        return keep, removed

    def _extract_all(self, html: list[str]) -> tuple[list[str | None], list[str | None], dict[str, int]]:
        if self.extract is None:
            self.setup()
        assert self.extract is not None
        texts: list[str | None] = []
        titles: list[str | None] = []
        failed = {"timeout": 0, "extractor_error": 0}
        cap = self.params.max_html_bytes
        for page in html:  # one library call per page: the extractors take one document at a time
            try:
                with _deadline(self.params.timeout):
                    text, title = self.extract(page if len(page) <= cap else page[:cap])
            except _Timeout:
                text, title, failed["timeout"] = None, None, failed["timeout"] + 1
            except Exception:  # one bad page never stops the file
                text, title, failed["extractor_error"] = None, None, failed["extractor_error"] + 1
            texts.append(text)
            titles.append(title)
        return texts, titles, failed

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        candidates, removed = self._candidates(batch)
        pages = batch.filter(candidates)
        html = pages.column(columns.text)
        texts, titles, failed = self._extract_all(html.to_pylist())
        text = pc.utf8_trim_whitespace(pa.array(texts, pa.string()))
        length = pc.fill_null(pc.utf8_length(text), 0)  # a failed page has no text: length 0
        short = pc.and_(pc.greater(length, 0), pc.less(length, self.params.min_chars))
        keep = pc.and_(pc.greater(length, 0), pc.greater_equal(length, self.params.min_chars))
        removed.update(failed)
        removed["no_text"] = (pc.sum(pc.equal(length, 0)).as_py() or 0) - sum(failed.values())
        removed["too_short"] = pc.sum(short).as_py() or 0
        kept = self._columns(pages, text, pa.array(titles, pa.string()), columns).filter(keep)
        counters: dict = {"removed": {k: v for k, v in removed.items() if v}}
        if "truncated" in pages.schema.names:
            counters["html_truncated"] = pc.sum(pc.cast(pages.column("truncated"), pa.int64())).as_py() or 0
        return StageOutput(kept, counters=counters)

    def _columns(self, pages: pa.RecordBatch, text: pa.Array, title: pa.Array, columns: Columns) -> pa.RecordBatch:
        """Input columns (less the HTML unless --keep-html, and the WARC record's bookkeeping) + text, title."""
        names = [n for n in pages.schema.names
                 if n not in (TEXT, "title", *_RECORD_COLUMNS) and (n != columns.text or self.params.keep_html)]
        arrays = [pages.column(n) for n in names]
        fields = [pages.schema.field(n) for n in names]
        at = names.index("date") + 1 if "date" in names else len(names)
        arrays[at:at] = [text, title]
        fields[at:at] = [pa.field(TEXT, pa.string()), pa.field("title", pa.string())]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


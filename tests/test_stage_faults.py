"""Faults users met in langid, dedup and pack, each reproduced through the CLI: what curate must do instead."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from conftest import write_parquet
from typer.testing import CliRunner

from curate.cli.main import app

runner = CliRunner()
SHARED_TEXT = "the quick brown fox jumps over the lazy dog and runs far away into the green forest"


@pytest.mark.parametrize("command", [["minhash"], ["exact"]])
def test_dedup_refuses_a_shared_id_naming_file_row_and_id(tmp_path, command):
    """Document b.parquet row 0 is unique but has the id of a removed copy: it must never be dropped."""
    write_parquet(tmp_path / "in" / "a.parquet", pa.table({"id": ["a", "b"], "text": [SHARED_TEXT, SHARED_TEXT]}))
    write_parquet(tmp_path / "in" / "b.parquet", pa.table({
        "id": ["b", "c"],
        "text": ["a unique paragraph about rivers, bridges and the towns along them",
                 "another document with words of its own and nothing shared at all"],
    }))
    result = runner.invoke(app, ["dedup", *command, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 3, result.output
    message = result.output.strip().splitlines()[-1]
    assert f"{tmp_path / 'in' / 'b.parquet'}, row 0, column 'id': id 'b'" in message
    assert f"{tmp_path / 'in' / 'a.parquet'}, row 1" in message and "ids must be unique" in message
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_dedup_shared_id_in_json_lines_names_the_line(tmp_path):
    lines = [{"id": "x", "text": SHARED_TEXT}, {"id": "y", "text": "other words here"},
             {"id": "x", "text": "a third text"}]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["dedup", "minhash", str(source), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 3, result.output
    assert f"{source}, line 3, column 'id': id 'x' is also the id of {source}, line 1" in result.output


@pytest.fixture
def three_languages(tmp_path) -> Path:
    return write_parquet(tmp_path / "docs.parquet", pa.table({
        "id": ["en", "fr", "de"],
        "lang": ["x-en", "x-fr", "x-de"],
        "text": ["This is an English sentence about the weather and the trains today.",
                 "Ceci est une phrase en français sur la météo et les trains d'aujourd'hui.",
                 "Dies ist ein deutscher Satz über das Wetter und die Züge von heute."],
    }))


def test_langid_keep_maps_iso_639_3_to_the_model_code_and_says_so(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out"), "--keep", "eng,fra"])
    assert result.exit_code == 0, result.output
    assert "--keep eng: using the model's code 'en'" in result.output
    assert sorted(pl.read_parquet(tmp_path / "out" / "part-00000.parquet")["id"]) == ["en", "fr"]


def test_langid_keep_refuses_codes_the_model_does_not_know(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out"), "--keep", "engl,qqq"])
    assert result.exit_code == 2, result.output
    assert "lid.176.ftz has no language 'engl' (did you mean en" in result.output and "'qqq'" in result.output
    assert not (tmp_path / "out").exists()


def test_langid_warns_when_the_filter_keeps_nothing(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out"), "--keep", "ja"])
    assert result.exit_code == 0, result.output
    assert "warning: no document kept of 3 (removed: lang_not_kept 3)" in result.output


def test_langid_keeps_an_input_lang_column_as_lang_original(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "already had a 'lang' column; it is kept as 'lang_original'" in result.output
    out = pl.read_parquet(tmp_path / "out" / "part-00000.parquet").sort("id")
    assert out["lang_original"].to_list() == ["x-de", "x-en", "x-fr"]
    assert out["lang"].to_list() == ["de", "en", "fr"]
    # a second langid keeps the first original
    result = runner.invoke(app, ["langid", str(tmp_path / "out"), "-o", str(tmp_path / "again")])
    assert result.exit_code == 0 and "lang_original" not in result.output
    again = pl.read_parquet(tmp_path / "again" / "part-00000.parquet").sort("id")
    assert again["lang_original"].to_list() == ["x-de", "x-en", "x-fr"]


def _edited_pairs(shared_data: Path, langs: tuple[str, ...], per_lang: int) -> pl.DataFrame:
    """UDHR paragraphs of one translation per language, each beside a copy with two characters swapped."""
    paragraphs = pl.read_parquet(shared_data / "udhr" / "paragraphs.parquet")
    rows = []
    for lang in langs:
        of_lang = paragraphs.filter(pl.col("lang") == lang)
        of_lang = of_lang.filter(pl.col("doc_id") == of_lang["doc_id"][0], pl.col("text").str.len_chars() >= 80)
        for row in of_lang.unique("text", keep="first", maintain_order=True).head(per_lang).iter_rows(named=True):
            text, middle = row["text"], len(row["text"]) // 2
            edited = text[:middle] + text[middle + 1] + text[middle] + text[middle + 2 :]
            rows += [{"id": row["id"], "pair": row["id"], "lang": lang, "text": text},
                     {"id": row["id"] + "-edited", "pair": row["id"], "lang": lang, "text": edited}]
    return pl.DataFrame(rows)


def _annotate(source: Path, out: Path, *flags: str) -> pl.DataFrame:
    result = runner.invoke(app, ["dedup", "minhash", str(source), "-o", str(out), "-q", "--mode", "annotate", *flags])
    assert result.exit_code == 0, result.output
    return pl.read_parquet(sorted(out.glob("part-*.parquet"))).sort("id")


def test_minhash_finds_near_duplicates_in_chinese_and_japanese(shared_data, tmp_path):
    from curate.stages.dedup.shingles import Normalization, normalize, shingle_hashes

    pairs = _edited_pairs(shared_data, ("zh", "ja"), 25)
    source = write_parquet(tmp_path / "cjk.parquet", pairs.drop("lang").to_arrow())  # script detection alone
    found = _pairs_found(_annotate(source, tmp_path / "out"))
    assert sum(found.values()) >= 0.9 * len(found), f"{sum(found.values())} of {len(found)} edited pairs found"
    hashes, offsets = shingle_hashes(normalize(pairs["text"].to_arrow(), Normalization()), "words", 5, 5)
    sets = [set(hashes[offsets[i] : offsets[i + 1]].tolist()) for i in range(pairs.height)]
    jaccard = [len(a & b) / len(a | b) for a, b in zip(sets[::2], sets[1::2], strict=True)]
    assert all(found[pair] for pair, j in zip(pairs["pair"][::2], jaccard, strict=True) if j >= 0.9)
    # the lang column alone also selects char shingles (Thai: spaces between phrases, not words)
    thai = write_parquet(tmp_path / "th.parquet", _edited_pairs(shared_data, ("th",), 10).to_arrow())
    thai_found = _pairs_found(_annotate(thai, tmp_path / "th"))
    assert sum(thai_found.values()) >= 0.9 * len(thai_found)


def _pairs_found(annotated: pl.DataFrame) -> dict[str, bool]:
    """Whether each original and its edited copy ended in one cluster."""
    same = annotated.group_by("pair").agg(pl.col("dup_cluster_id").n_unique() == 1)
    return dict(same.iter_rows())


def test_minhash_results_on_spaced_languages_do_not_change(shared_data, tmp_path):
    pairs = _edited_pairs(shared_data, ("en", "fr", "ru", "es"), 30)
    source = write_parquet(tmp_path / "spaced.parquet", pairs.to_arrow())
    default = _annotate(source, tmp_path / "default")
    words_only = _annotate(source, tmp_path / "words", "--spaceless-ngram", "0")
    assert default.select("id", "dup_cluster_id", "dup_keep").equals(words_only.select("id", "dup_cluster_id", "dup_keep"))
    assert default["dup_cluster_size"].max() > 1


@pytest.mark.parametrize("name", ["gpt2.json", "gpt-neox-20b.json"])
def test_pack_encodes_a_long_document_in_pieces_with_the_same_ids(shared_data, monkeypatch, name):
    """Pieces cut at whitespace give the ids of encoding the whole document (pieces made small here)."""
    from curate.stages.pack import tokenize as tok

    monkeypatch.setattr(tok, "LONG_DOCUMENT_BYTES", 20_000)
    monkeypatch.setattr(tok, "PIECE_BYTES", 4_000)
    paragraphs = pl.read_parquet(shared_data / "udhr" / "paragraphs.parquet").sample(1500, seed=1)["text"]
    english = pl.read_parquet(shared_data / "english" / "misc.parquet").head(200)["text"]
    text = "\n\n".join([*paragraphs, *english]) + "  \t\n tail  "
    tokenizer = tok.load_tokenizer(shared_data / "tokenizers" / name)
    batch = tok.tokenize(tokenizer, pa.array(["a short one", text, "another"]), eos_id=0)
    assert batch.num_docs == 3
    long = batch.tokens[batch.offsets[1] : batch.offsets[2]].tolist()
    assert long == [*tokenizer.encode(text).ids, 0]
    assert batch.tokens[: batch.offsets[1]].tolist() == [*tokenizer.encode("a short one").ids, 0]
    bounds = list(tok.piece_bounds(memoryview(text.encode()), 4_000))
    assert len(bounds) > 100 and all(hi - lo >= 4_000 for lo, hi in bounds[:-1])


def test_pack_pieces_keep_the_special_tokens_of_the_whole_document(monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from curate.stages.pack import tokenize as tok

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    monkeypatch.setattr(tok, "LONG_DOCUMENT_BYTES", 100)
    monkeypatch.setattr(tok, "PIECE_BYTES", 10)
    text = " ".join(["a b"] * 100)
    batch = tok.tokenize(tokenizer, pa.array([text]), eos_id=2)
    assert batch.tokens.tolist() == [*tokenizer.encode(text).ids, 2] == [1, *[3, 4] * 100, 2, 2]


def test_minhash_says_when_it_compiles_its_kernels(tmp_path, monkeypatch):
    """Without numba's cache every kernel needs compiling; the CLI says so once, before the ~15 s pause."""
    import subprocess
    import sys

    from curate.stages.dedup import minhash_dedup

    check = "from curate.stages.dedup.minhash_dedup import kernels_to_compile; print(len(kernels_to_compile()))"
    empty_cache = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    fresh = subprocess.run([sys.executable, "-c", check], env=empty_cache, capture_output=True, text=True, check=True)
    assert int(fresh.stdout) >= 10
    source = write_parquet(tmp_path / "docs.parquet", pa.table({"id": ["a", "b"], "text": [SHARED_TEXT, "other"]}))
    runner.invoke(app, ["dedup", "minhash", str(source), "-o", str(tmp_path / "warm"), "-q"])  # fills the cache
    assert minhash_dedup.kernels_to_compile() == []
    monkeypatch.setattr(minhash_dedup, "kernels_to_compile", lambda: ["_signatures"])
    result = runner.invoke(app, ["dedup", "minhash", str(source), "-o", str(tmp_path / "again")])
    assert result.exit_code == 0 and result.output.count("compiling MinHash kernels (first run only)…") == 1


def test_pack_warns_when_no_token_reaches_the_output(shared_data, tmp_path):
    source = write_parquet(tmp_path / "tiny.parquet", pa.table({"id": ["a", "b"], "text": ["short", "also short"]}))
    result = runner.invoke(app, ["pack", str(source), "-o", str(tmp_path / "out"), "-q",
                                 "--tokenizer", str(shared_data / "tokenizers" / "gpt2.json")])
    assert result.exit_code == 0, result.output
    assert "warning: no token of the 2 documents reached the output (tokens dropped: shorter_than_min_piece" \
        in result.output

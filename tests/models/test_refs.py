from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.models import parse_model_ref
from entrypoint.models.catalog import catalog_key
from entrypoint.models.layout import install_dir


def test_hf_file_ref_with_revision() -> None:
    ref = parse_model_ref("hf:TheBloke/Llama-2-7B-GGUF/sub/llama-2-7b.Q4_K_M.gguf@v1.0")
    assert (ref.source, ref.owner, ref.repo, ref.filename, ref.revision) == (
        "hf",
        "TheBloke",
        "Llama-2-7B-GGUF",
        "sub/llama-2-7b.Q4_K_M.gguf",
        "v1.0",
    )
    assert ref.model_id() == "hf:TheBloke/Llama-2-7B-GGUF/sub/llama-2-7b.Q4_K_M.gguf@v1.0"
    assert catalog_key(ref, None) == "TheBloke/Llama-2-7B-GGUF"


def test_hf_repo_ref_defaults_to_main_and_keeps_pr_revisions() -> None:
    assert parse_model_ref("hf:org/repo").model_id() == "hf:org/repo@main"
    ref = parse_model_ref("hf://org/repo@refs/pr/3")
    assert ref.filename is None and ref.revision == "refs/pr/3"


def test_revision_flag_applies_and_conflicts_are_errors() -> None:
    assert parse_model_ref("hf:o/r/f.gguf", revision="abc").revision == "abc"
    with pytest.raises(ConfigError, match="names revision 'x' but --revision is 'y'"):
        parse_model_ref("hf:o/r/f.gguf@x", revision="y")
    with pytest.raises(ConfigError, match="hf: references only"):
        parse_model_ref("/m/x.gguf", revision="y")


def test_local_refs(tmp_path: Path) -> None:
    assert parse_model_ref("/models/x.gguf").local_path() == Path("/models/x.gguf")
    assert parse_model_ref("file:///models/x.gguf").local_path() == Path("/models/x.gguf")
    assert parse_model_ref("file:/models/x.gguf").local_path() == Path("/models/x.gguf")
    ref = parse_model_ref("./sub/../x.gguf")
    assert ref.local_path(tmp_path) == tmp_path / "x.gguf"
    assert ref.model_id(tmp_path) == f"local:{tmp_path / 'x.gguf'}"


def test_url_ref() -> None:
    ref = parse_model_ref("https://example.org/m/x.gguf#frag")
    assert ref.source == "https" and ref.url == "https://example.org/m/x.gguf" and ref.basename == "x.gguf"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("hf:owner/", "expected hf:owner/repo"),
        ("hf:-bad-", "not a valid Hugging Face repo name"),
        ("http://[::1/x.gguf", "not a valid URL"),
        ("http://host:port/x.gguf", "not a valid URL"),
        ("/models/a\0b.gguf", "NUL"),
        ("hf:own er/repo", "not a valid Hugging Face owner name"),
        ("hf:o/r--x", "not a valid Hugging Face repo name"),
        ("hf:o/r/../etc/passwd", "bad file path"),
        ("hf:o/r@", "bad revision"),
        ("s3://bucket/x.gguf", "unknown scheme 's3'"),
        ("https://example.org/", "does not end with a file name"),
        ("https:///x.gguf", "has no host"),
        ("file:", "needs a path"),
        ("https://example.org/a/%2e%2e", "cannot be a file name"),
        ("https://example.org/a/x%2Fy.gguf", "cannot be a file name"),
    ],
)
def test_bad_refs_name_the_ref_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_ref(text)
    assert message in info.value.message
    assert repr(text.strip()) in info.value.message or text == ""


def test_a_hub_id_without_an_owner_is_a_whole_repo(tmp_path: Path) -> None:
    ref = parse_model_ref("hf:distilbert-base-uncased@v1")
    assert (ref.owner, ref.repo, ref.repo_id, ref.filename, ref.rev) == (
        None,
        "distilbert-base-uncased",
        "distilbert-base-uncased",
        None,
        "v1",
    )
    assert ref.model_id() == "hf:distilbert-base-uncased@v1"
    assert install_dir(tmp_path, ref, "transformers") == tmp_path / "transformers" / "_" / "distilbert-base-uncased"

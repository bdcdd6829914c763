"""Tests of handbook.embed: item texts, the offline default encoder, the cache, neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from handbook import embed

MOVIES = pd.DataFrame(
    {
        "title": ["Toy Story", "Heat", "Casino"],
        "year": ["1995", "", "1995"],
        "genres": ["Animation Children's Comedy", "Action Crime", ""],
    }
)

PRODUCTS = pd.DataFrame(
    {
        "title": ["Matte lipstick", "Shampoo"],
        "brand": ["", "Acme"],
        "categories": ["Beauty > Makeup > Lips", "Beauty > Hair Care"],
        "price": ["12.99", ""],
    }
)

# Three pairs of near-paraphrases on unrelated topics, plus one odd one out.
TEXTS = [
    "Title: Red matte lipstick; Categories: Beauty > Makeup > Lips",
    "Title: Long-lasting lip colour in crimson; Categories: Beauty > Makeup",
    "Title: Cordless power drill with two batteries; Categories: Tools",
    "Title: Electric drill driver kit; Categories: Tools > Power Tools",
    "Title: Anti-dandruff shampoo; Categories: Beauty > Hair Care",
    "Title: Shampoo for dry scalp and flakes; Categories: Beauty > Hair",
    "Title: Toy Story; Year: 1995; Genres: Animation Children's Comedy",
    "Title: Stainless steel camping kettle",
]


@pytest.fixture(scope="module")
def default_vectors() -> np.ndarray:
    """TEXTS through the real packaged MiniLM, computed once for the module."""
    return embed.embed_texts(TEXTS, cache_dir=None, device="cpu", show_progress=False)


# --------------------------------------------------------------------------- item texts


def test_item_texts_default_skips_empty_fields() -> None:
    texts = embed.item_texts(MOVIES)
    assert texts == [
        "Title: Toy Story; Year: 1995; Genres: Animation Children's Comedy",
        "Title: Heat; Genres: Action Crime",
        "Title: Casino; Year: 1995",
    ]
    assert embed.item_texts(PRODUCTS) == [
        "Title: Matte lipstick; Categories: Beauty > Makeup > Lips; Price: 12.99",
        "Title: Shampoo; Brand: Acme; Categories: Beauty > Hair Care",
    ]


def test_item_texts_default_matches_family_templates_and_ignores_ids() -> None:
    assert embed.item_texts(MOVIES) == embed.item_texts(MOVIES, "ml-100k")
    assert embed.item_texts(PRODUCTS) == embed.item_texts(PRODUCTS, "amazon")
    with_id = PRODUCTS.assign(item_id=["a", "b"])
    assert embed.item_texts(with_id) == embed.item_texts(PRODUCTS)


def test_item_texts_treats_missing_values_as_empty() -> None:
    items = pd.DataFrame({"title": ["A", None], "year": [np.nan, "2001"]})
    assert embed.item_texts(items) == ["Title: A", "Year: 2001"]


def test_item_texts_custom_template() -> None:
    texts = embed.item_texts(MOVIES, "{title} ({year})")
    assert texts == ["Toy Story (1995)", "Heat ()", "Casino (1995)"]
    # "; "-separated segments whose fields are all empty are dropped, literals stay.
    texts = embed.item_texts(PRODUCTS, "Product; {title}; by {brand}")
    assert texts == ["Product; Matte lipstick", "Product; Shampoo; by Acme"]


def test_item_texts_unknown_placeholder_names_field_and_columns() -> None:
    with pytest.raises(ValueError, match=r"\{brand\}.*title.*year.*genres"):
        embed.item_texts(MOVIES, "Title: {title}; Brand: {brand}")
    with pytest.raises(ValueError, match="TEMPLATES"):
        embed.item_texts(MOVIES, "no-such-family")
    with pytest.raises(ValueError, match="positional"):
        embed.item_texts(MOVIES, "Title: {}")


# --------------------------------------------------------------------------- model


def test_resolve_model_default_is_packaged_directory() -> None:
    path = embed.resolve_model(embed.DEFAULT_MODEL)
    assert (Path(path) / "modules.json").exists()
    assert embed.resolve_model(f"sentence-transformers/{embed.DEFAULT_MODEL}") == path
    assert embed.resolve_model("sentence-t5-base") == "sentence-t5-base"


def test_missing_local_model_path_says_what_to_do(tmp_path) -> None:
    with pytest.raises(OSError, match="does not exist"):
        embed._load_model(str(tmp_path / "no-model"), "cpu")


def test_default_embeddings_float32_unit_norm(default_vectors: np.ndarray) -> None:
    assert default_vectors.dtype == np.float32
    assert default_vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(default_vectors, axis=1), 1.0, atol=1e-5)


def test_similar_texts_are_nearer_than_unrelated(default_vectors: np.ndarray) -> None:
    sims = default_vectors @ default_vectors.T
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        unrelated = [j for j in range(len(TEXTS)) if j not in (a, b)]
        assert sims[a, b] > sims[a, unrelated].max()
        assert sims[b, a] > sims[b, unrelated].max()


# --------------------------------------------------------------------------- cache


class _FakeEncoder:
    """Stands in for a SentenceTransformer: deterministic vectors, counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str], **kwargs: object) -> np.ndarray:
        self.calls += 1
        rng = np.random.default_rng(len(texts))
        return rng.normal(size=(len(texts), 8)).astype(np.float64)

    def get_sentence_embedding_dimension(self) -> int:
        return 8


@pytest.fixture
def fake_loader(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Replace the model loader by a fake; returns the list of (model, device) it was asked for."""
    loads: list[tuple[str, str]] = []
    encoder = _FakeEncoder()

    def load(name: str, device: str) -> _FakeEncoder:
        loads.append((name, device))
        return encoder

    monkeypatch.setattr(embed, "_load_model", load)
    return loads


def test_cache_hit_does_not_load_the_model(tmp_path, monkeypatch, fake_loader) -> None:
    first = embed.embed_texts(TEXTS, cache_dir=tmp_path, device="cpu", show_progress=False)
    assert len(fake_loader) == 1
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary behind

    def refuse(name: str, device: str) -> None:
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr(embed, "_load_model", refuse)
    second = embed.embed_texts(TEXTS, cache_dir=tmp_path, device="cpu", show_progress=False)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32


def test_cache_changed_text_recomputes(tmp_path, fake_loader) -> None:
    embed.embed_texts(TEXTS, cache_dir=tmp_path, device="cpu", show_progress=False)
    changed = [*TEXTS[:-1], TEXTS[-1] + " (2 litres)"]
    embed.embed_texts(changed, cache_dir=tmp_path, device="cpu", show_progress=False)
    assert len(fake_loader) == 2
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_cache_disabled_always_recomputes(tmp_path, fake_loader, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        embed.embed_texts(TEXTS, cache_dir=None, device="cpu", show_progress=False)
    assert len(fake_loader) == 2
    assert not list(tmp_path.rglob("*.npy"))


def test_cache_key_depends_on_model_and_unambiguous_join(tmp_path) -> None:
    key = embed.cache_path(TEXTS, "all-MiniLM-L6-v2", tmp_path)
    assert key != embed.cache_path(TEXTS, "sentence-t5-base", tmp_path)
    assert key == embed.cache_path(TEXTS, "sentence-transformers/all-MiniLM-L6-v2", tmp_path)
    assert key.name.startswith("all-MiniLM-L6-v2-")
    # Texts that would collide under a naive join must not share a file.
    assert embed.cache_path(["a;b"], cache_dir=tmp_path) != embed.cache_path(
        ["a", "b"], cache_dir=tmp_path
    )
    assert embed.cache_path(["a", ""], cache_dir=tmp_path) != embed.cache_path(
        ["", "a"], cache_dir=tmp_path
    )
    # Sanitised: a path-like model name never escapes the cache folder.
    assert embed.cache_path(TEXTS, "../org/My Model", tmp_path).parent == tmp_path


def test_corrupt_cache_file_is_recomputed(tmp_path, fake_loader) -> None:
    path = embed.cache_path(TEXTS, cache_dir=tmp_path)
    path.write_bytes(b"not an npy file")
    out = embed.embed_texts(TEXTS, cache_dir=tmp_path, device="cpu", show_progress=False)
    assert len(fake_loader) == 1
    np.testing.assert_array_equal(np.load(path), out)


def test_embed_items_uses_item_texts(tmp_path, fake_loader) -> None:
    out = embed.embed_items(MOVIES, cache_dir=tmp_path, device="cpu", show_progress=False)
    assert out.shape == (len(MOVIES), 8)
    assert embed.cache_path(embed.item_texts(MOVIES), cache_dir=tmp_path).exists()


def test_non_string_texts_are_rejected() -> None:
    with pytest.raises(TypeError, match="position 1"):
        embed.embed_texts(["ok", None], cache_dir=None)  # type: ignore[list-item]


# --------------------------------------------------------------------------- neighbours


def test_nearest_neighbours_excludes_self() -> None:
    # Row 2 duplicates row 0: it must be row 0's best neighbour, and row 0 never its own.
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.7, 0.7], [-1.0, 0.0]])
    nn = embed.nearest_neighbours(emb, [0, 1, 2], k=3)
    assert nn.shape == (3, 3)
    for q, row in zip([0, 1, 2], nn, strict=True):
        assert q not in row
    assert nn[0].tolist() == [2, 3, 1]
    assert nn[2].tolist() == [0, 3, 1]
    assert embed.nearest_neighbours(emb, 4, k=1).tolist() == [1]  # a scalar query gives 1-D
    with pytest.raises(ValueError, match="k must be"):
        embed.nearest_neighbours(emb, [0], k=5)


def test_nearest_neighbours_on_real_embeddings(default_vectors: np.ndarray) -> None:
    nn = embed.nearest_neighbours(default_vectors, [0, 2, 4], k=1)
    assert nn[:, 0].tolist() == [1, 3, 5]


def test_unavailable_model_offline_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="not available offline.*local directory"):
        embed._load_model("no-such-org/no-such-model-xyz", "cpu")

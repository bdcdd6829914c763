"""handbook.checks: a missing, misshapen or wrong by-hand answer fails with a message; a right one passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from handbook import checks
from handbook.models import RPG
from handbook.models.rpg import mtp_loss
from handbook.sid import SemanticIDs


def test_a_missing_answer_says_it_is_a_todo() -> None:
    with pytest.raises(checks.CheckFailed, match=r"`loss` is not computed yet.*TODO.*\nHint: mean"):
        checks.close("loss", None, torch.tensor(1.0), hint="mean over digits")
    with pytest.raises(checks.CheckFailed, match="`beams` is not computed yet"):
        checks.equal("beams", None, [[1, 2]])
    with pytest.raises(checks.CheckFailed, match="`by_hand` is not computed yet"):
        checks.computed(by_hand=None)


def test_a_wrong_shape_names_both_shapes() -> None:
    with pytest.raises(checks.CheckFailed, match=r"has shape \(5,\); the package's has \(5, 8\)"):
        checks.close("s", torch.zeros(5), torch.zeros(5, 8))
    with pytest.raises(checks.CheckFailed, match=r"has shape \(2,\); the package's has \(3,\)"):
        checks.equal("codes", np.array([1, 2]), np.array([1, 2, 3]))


def test_a_wrong_value_shows_the_difference() -> None:
    with pytest.raises(checks.CheckFailed, match="(?s)differs from the package.s value:.*Greatest absolute difference"):
        checks.close("x", torch.ones(3) * 1.01, torch.ones(3))
    with pytest.raises(checks.CheckFailed, match=r"differs at 1 of 3 places; the first is \(1,\): 2 where the package has 5"):
        checks.equal("codes", torch.tensor([1, 2, 3]), torch.tensor([1, 5, 3]))
    with pytest.raises(checks.CheckFailed, match=r"is \[\(1, 2\)\]; the package gives \[\[1, 3\]\]"):
        checks.equal("beams", [(1, 2)], [[1, 3]])


def test_right_answers_pass_across_types() -> None:
    checks.close("x", np.float32(0.5), torch.tensor(0.5, dtype=torch.float64))  # dtypes may differ
    checks.close("x", [[1.0, 2.0]], np.array([[1.0, 2.0]]))
    checks.equal("beams", [(1, 2), (3, 4)], [[1, 2], [3, 4]])  # tuples against lists
    checks.equal("n", np.int64(3), 3)
    checks.equal("mask", torch.eye(2, dtype=torch.bool), np.eye(2, dtype=bool))


def test_tolerance_follows_the_coarser_dtype() -> None:
    checks.close("x", torch.tensor([1.0 + 1e-6]), torch.tensor([1.0], dtype=torch.float64))  # float32 rounding
    with pytest.raises(checks.CheckFailed):
        checks.close("x", torch.tensor([1.0 + 1e-6], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))


rpg_codes = np.random.default_rng(1).integers(0, 8, size=(30, 4))  # 30 items, 4 digits of 8 codes


def _tiny_rpg() -> tuple[RPG, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    sids = SemanticIDs.from_codes(rpg_codes, 8, dedup=False)
    torch.manual_seed(0)
    rpg = RPG(sids, max_len=5, hidden=16, n_layers=1, n_heads=2, ffn=32, dropout=0.0).eval()
    sequences = [list(rng.integers(1, 31, size=6)) for _ in range(8)]
    return rpg, *RPG.make_batches(sequences, 5, 8, seed=0)[0]


def test_checks_reject_common_mistakes_in_a_real_exercise() -> None:
    """Notebook 07's MTP exercise: the right loss passes; forgetting the temperature or the cosine fails."""
    rpg, input_ids, labels = _tiny_rpg()
    with torch.no_grad():
        mask = labels != 0
        queries = rpg.heads(rpg.encode(input_ids)[mask])  # (M, m, D)
        E, targets = rpg.token_table(), torch.as_tensor(rpg_codes).long()[labels[mask] - 1]
        expected = rpg.loss((input_ids, labels))

        def loss(scale: float, normalise: bool) -> torch.Tensor:
            q, e = (F.normalize(queries, dim=-1), F.normalize(E, dim=-1)) if normalise else (queries, E)
            logits = torch.einsum("Mjd,jwd->Mjw", q, e) * scale
            return -logits.log_softmax(-1).gather(-1, targets[..., None]).mean()

        checks.close("loss_by_hand", loss(1 / rpg.temperature, True), expected)
        torch.testing.assert_close(expected, mtp_loss(queries, E, targets, rpg.temperature))
        for wrong in (loss(1.0, True), loss(1 / rpg.temperature, False)):
            with pytest.raises(checks.CheckFailed, match="`loss_by_hand` differs"):
                checks.close("loss_by_hand", wrong, expected)


def test_checks_reject_a_sum_for_a_mean() -> None:
    """Notebook 07's first exercise: an item is the mean of its digit embeddings, not their sum."""
    rpg, _, _ = _tiny_rpg()
    ids = torch.tensor([1, 2, 3])
    E, codes = rpg.token_table().detach(), torch.as_tensor(rpg_codes[ids.numpy() - 1]).long()
    expected = rpg.item_embeddings(ids)
    picked = E[torch.arange(codes.shape[1]), codes]  # (3, m, D)
    checks.close("by_hand", picked.mean(1), expected)
    with pytest.raises(checks.CheckFailed, match="`by_hand` differs"):
        checks.close("by_hand", picked.sum(1), expected)

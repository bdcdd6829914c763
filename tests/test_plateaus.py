"""Loss plateaus: the entropies a model reaches while it ignores the history, by hand."""

import math

import numpy as np
import pytest

from handbook.plateaus import (
    CODE_ENTROPY,
    ITEM_ENTROPY,
    LAST_ITEM,
    code_lines,
    digit_entropy,
    item_entropy,
    item_lines,
    last_item_cross_entropy,
    transitions,
)


def test_transitions_pair_each_item_but_the_first_with_the_one_before() -> None:
    previous, following = transitions([np.array([1, 2, 3]), np.array([4]), np.array([2, 1])])
    assert previous.tolist() == [1, 2, 2] and following.tolist() == [2, 3, 1]
    with pytest.raises(ValueError, match="no transition"):
        transitions([np.array([5])])


def test_item_and_digit_entropies_by_hand() -> None:
    assert item_entropy(np.array([1, 2, 3, 4]), 4) == pytest.approx(math.log(4))
    codes = np.array([[0, 0], [1, 0], [0, 1]])  # items 1, 2, 3
    # digit 0 of items [1, 2, 1, 2] is [0, 1, 0, 1]: ln 2; digit 1 is always 0: 0 nats
    np.testing.assert_allclose(digit_entropy(codes, np.array([1, 2, 1, 2])), [math.log(2), 0.0], atol=1e-12)


def test_last_item_cross_entropy_leaves_each_transition_out() -> None:
    codes = np.array([[0], [1]])  # one digit, two codes: item 1 -> 0, item 2 -> 1
    previous = np.array([5, 5, 5, 6])
    items = np.array([1, 1, 2, 2])  # after 5: codes 0, 0, 1; after 6: code 1
    k = 2.0  # marginal of the next codes: p(0) = p(1) = 1/2
    by_hand = [
        (1 + k / 2) / (2 + k),  # first 0 after 5: the other 0 of the three
        (1 + k / 2) / (2 + k),
        (0 + k / 2) / (2 + k),  # the 1 after 5: no other 1 after 5
        (0 + k / 2) / (0 + k),  # the only transition from 6: the marginal
    ]
    expected = -np.mean(np.log(by_hand))
    assert last_item_cross_entropy(codes, previous, items, strength=k)[0] == pytest.approx(expected)
    # a next code the last item decides, seen many times, costs almost nothing
    many = last_item_cross_entropy(codes, np.repeat([5, 6], 500), np.repeat([1, 2], 500))
    assert many[0] < 0.01


def test_named_lines_are_the_means_over_digits_of_the_training_transitions() -> None:
    sequences = [np.array([1, 2, 3, 1]), np.array([2, 3]), np.array([3, 1, 2])]
    codes = np.array([[0, 1], [1, 1], [1, 0]])
    previous, following = transitions(sequences)  # following: 2 3 1 3 1 2
    lines = code_lines(codes, sequences)
    assert set(lines) == {CODE_ENTROPY, LAST_ITEM}
    assert lines[CODE_ENTROPY] == pytest.approx(digit_entropy(codes, following).mean())
    assert lines[LAST_ITEM] == pytest.approx(last_item_cross_entropy(codes, previous, following).mean())
    assert item_lines(sequences, 3) == {ITEM_ENTROPY: pytest.approx(math.log(3))}  # each item twice

"""Token plans: visual and text spans, their counts, and the one expansion function."""

import pytest

from loupe.errors import LoupeError
from loupe.tokens import Text, Visual, fill_spans, num_positions, num_visual, span_ids


class _Tok:
    unk_token_id = 0
    vocab = {"<img>": 11, "</img>": 12}

    def convert_tokens_to_ids(self, t):
        return self.vocab.get(t, 0)


def test_counts_and_positions():
    plan = (Text(tokens=("<img>",)), Visual(6, grid=(3, 2)), Text(ids=(7, 8)), Visual(2), Text(tokens=("</img>",)))
    assert num_positions(plan) == 1 + 6 + 2 + 2 + 1 and num_visual(plan) == 8
    assert plan[1].positions() == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert span_ids(plan, 4, _Tok()) == [11, 4, 4, 4, 4, 4, 4, 7, 8, 4, 4, 12]


def test_fill_spans_overwrites_each_run_in_order():
    a = (Visual(2), Text(ids=(9,)))
    b = (Text(tokens=("<img>",)), Visual(1))
    ids = [1, 4, 4, 4, 20, 4, 4, 21]
    assert fill_spans(ids, [a, b], 4, _Tok()) == [1, 4, 4, 9, 20, 11, 4, 21]
    # adjacent images: the runs are taken by length, not by gaps
    assert fill_spans([4, 4, 4, 4, 4], [a, b], 4, _Tok()) == [4, 4, 9, 11, 4]


def test_bad_plans_and_runs_are_named():
    with pytest.raises(LoupeError, match="either ids or tokens"):
        Text()
    with pytest.raises(LoupeError, match="grid"):
        Visual(5, grid=(2, 2))
    with pytest.raises(LoupeError, match="run of 3"):
        fill_spans([1, 4, 4, 2], [(Visual(3),)], 4)
    with pytest.raises(LoupeError, match="no '<x>' token"):
        span_ids((Text(tokens=("<x>",)),), 4, _Tok())

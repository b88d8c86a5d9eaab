"""Route seed lists on the command line: single seeds, lists and ranges."""
import argparse

from llava_drive.recording.cli import seed_list
import pytest


@pytest.mark.parametrize('text, seeds', [('3', [3]), ('1,2,5', [1, 2, 5]),
                                         ('1-4,9', [1, 2, 3, 4, 9]), (' 7 , 8-8 ', [7, 8])])
def test_seeds_and_ranges(text, seeds):
    assert seed_list(text) == seeds


@pytest.mark.parametrize('text, message', [('', 'no route seed'), ('a', 'integers'),
                                           ('-1', 'integers'), ('1-x', 'integers'),
                                           ('5-3,7', "'5-3' goes downwards")])
def test_bad_seed_lists_are_named(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        seed_list(text)

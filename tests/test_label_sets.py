"""The one registry of label sets (configuration_cage.LABEL_SETS) and every place that names a label set."""

from __future__ import annotations

import argparse

import pytest

from cage.configuration_cage import LABEL_SETS, affectnet_label_set, label_set_of_labels
from cage.presets import make_config

AFFECTNET8 = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")


def test_registry_holds_the_papers_label_sets():
    assert list(LABEL_SETS) == ["affectnet8", "affectnet7", "emotic"]
    assert LABEL_SETS["affectnet8"].labels == AFFECTNET8
    assert LABEL_SETS["affectnet7"].labels == AFFECTNET8[:7]
    emotic = LABEL_SETS["emotic"]
    assert len(emotic.labels) == 26 and emotic.labels[0] == "Affection" and emotic.labels[-1] == "Yearning"
    assert [s.title for s in LABEL_SETS.values()] == ["AffectNet-8", "AffectNet-7", "EMOTIC"]
    assert [s.dataset for s in LABEL_SETS.values()] == ["affectnet", "affectnet", "emotic"]
    assert [s.multi_label for s in LABEL_SETS.values()] == [False, False, True]
    assert emotic.regression_targets == ("valence", "arousal", "dominance")
    assert LABEL_SETS["affectnet7"].regression_targets == ("valence", "arousal")


def test_lookups():
    assert affectnet_label_set(8).name == "affectnet8" and affectnet_label_set(7).name == "affectnet7"
    with pytest.raises(ValueError, match="classes must be 8 .* or 7"):
        affectnet_label_set(9)
    assert label_set_of_labels(list(AFFECTNET8), multi_label=False).name == "affectnet8"
    assert label_set_of_labels(AFFECTNET8, multi_label=True) is None
    assert label_set_of_labels(["a", "b"], multi_label=False) is None


@pytest.mark.parametrize("name", list(LABEL_SETS))
def test_presets_follow_the_registry(name):
    config = make_config(name, backbone="test_vit", image_size=64)
    label_set = LABEL_SETS[name]
    assert tuple(config.id2label[i] for i in range(config.num_labels)) == label_set.labels
    assert tuple(config.regression_targets) == label_set.regression_targets
    assert config.multi_label is label_set.multi_label


def _choices(argv_prefix: list[str], option: str) -> list:
    from cage.cli import build_parser

    parser = build_parser()
    for name in argv_prefix:  # walk down the subcommands
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return next(a for a in parser._actions if option in a.option_strings).choices


def test_cli_spellings_map_onto_the_registry():
    # The CLI keeps literal choices (fast start: no transformers import while building parsers); they must
    # name exactly the registry's label sets.
    assert _choices(["init-model"], "--labels") == list(LABEL_SETS)
    for command in (["prepare", "affectnet"], ["reproduce"]):
        classes = _choices(command, "--classes")
        assert sorted(f"affectnet{c}" for c in classes) == sorted(
            n for n, s in LABEL_SETS.items() if s.dataset == "affectnet"
        )


def test_card_and_paper_results_use_the_registry_titles():
    from cage.hub.card import dataset_name
    from cage.hub.paper_results import PAPER_RESULTS

    for name, label_set in LABEL_SETS.items():
        assert dataset_name(make_config(name, backbone="test_vit", image_size=64)) == label_set.title
    titles = {s.title for s in LABEL_SETS.values()}
    assert {dataset for dataset, _ in PAPER_RESULTS} <= titles

import pytest

from tasks.evaluation.report import EvalReport
from tasks.registry.int8_choice import int8_matches


def _report(split: str, top1: float, map50: float) -> EvalReport:
    return EvalReport.model_construct(split=split, top1_accuracy=top1, map50=map50)


def test_int8_ships_only_when_top1_and_map_both_hold_on_valid():
    fp32 = _report("valid", 0.896, 0.912)
    assert int8_matches(fp32, _report("valid", 0.889, 0.919)), "one image of 144 is noise"
    assert not int8_matches(fp32, _report("valid", 0.875, 0.919)), "top-1 fell 3 images"
    assert not int8_matches(fp32, _report("valid", 0.896, 0.890)), "mAP50 fell 0.022"


def test_int8_is_compared_on_the_same_split():
    with pytest.raises(ValueError, match="not comparable"):
        int8_matches(_report("valid", 0.9, 0.9), _report("test", 0.9, 0.9))

import pytest

from ledger.errors import InputError
from simulator.stopping import StopCondition


def test_relative_condition():
    c = StopCondition.parse("ppl>1.5x")
    assert (c.suite, c.metric, c.op, c.threshold, c.relative) == ("perplexity", "ppl", ">", 1.5, True)
    assert not c.triggered(14.9, 10.0)
    assert c.triggered(15.1, 10.0)
    assert not c.triggered(None, 10.0)       # not measured at this step
    assert not c.triggered(20.0, None)       # no base value: cannot judge a relative limit


def test_absolute_condition_with_suite_metric():
    c = StopCondition.parse(" neighborhood.ns <= 0.8 ")
    assert (c.suite, c.metric, c.relative) == ("neighborhood", "ns", False)
    assert c.triggered(0.8, None) and not c.triggered(0.81, None)


@pytest.mark.parametrize("bad", ["ppl", "ppl >> 2", "nonsense>1", "ppl>abc"])
def test_bad_conditions_say_how_to_write_them(bad):
    with pytest.raises(InputError, match="METRIC OP NUMBER|unknown metric"):
        StopCondition.parse(bad)

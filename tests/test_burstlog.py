import logging

from clusterdns.burstlog import BurstLog


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_first_logged_rest_counted_then_summarised(caplog):
    clock = Clock()
    burst = BurstLog(logging.getLogger("t"), interval=30, clock=clock)
    with caplog.at_level(logging.ERROR, logger="t"):
        for _ in range(1000):
            burst.report("upstream", "upstream 127.0.0.1:53 timed out")
        assert [r.getMessage() for r in caplog.records] == ["upstream 127.0.0.1:53 timed out"]
        clock.now = 31
        burst.flush()
    assert caplog.records[-1].getMessage() == "999 more like this in the last 31s; latest: upstream 127.0.0.1:53 timed out"
    assert len(caplog.records) == 2


def test_kinds_are_separate_and_a_quiet_burst_logs_no_summary(caplog):
    clock = Clock()
    burst = BurstLog(logging.getLogger("t"), interval=10, clock=clock)
    with caplog.at_level(logging.ERROR, logger="t"):
        burst.report("a", "A")
        burst.report("b", "B")
        clock.now = 11
        burst.flush()
        burst.report("a", "A again")
    assert [r.getMessage() for r in caplog.records] == ["A", "B", "A again"]


def test_flush_everything_reports_a_burst_cut_short(caplog):
    clock = Clock()
    burst = BurstLog(logging.getLogger("t"), interval=30, clock=clock)
    with caplog.at_level(logging.ERROR, logger="t"):
        for _ in range(5):
            burst.report("k", "boom")
        clock.now = 2
        burst.flush()  # the interval is not over: nothing yet
        assert len(caplog.records) == 1
        burst.flush(everything=True)  # at shutdown
    assert caplog.records[-1].getMessage() == "4 more like this in the last 2s; latest: boom"

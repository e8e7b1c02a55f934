"""When an ETA estimate counts as moved (pipeline.service.eta.moved); tests/test_eta.py
covers the estimates of a running stack."""
from __future__ import annotations

from datetime import datetime

from pipeline.service import eta


def test_an_estimate_moves_only_beyond_a_tenth_of_the_wait_it_announced():
    from datetime import timedelta
    sent_at = datetime(2026, 1, 1)
    old = (sent_at, sent_at + timedelta(seconds=100))
    # Appearing or vanishing is a move; nothing to nothing is not
    assert eta.moved((None, None), old, None) and eta.moved(old, (None, None), sent_at)
    assert not eta.moved((None, None), (None, None), None)
    # 9 s on a 100 s wait is not; 11 s (either way) is, however late it is checked
    assert not eta.moved(old, (sent_at, old[1] + timedelta(seconds=9)), sent_at)
    assert eta.moved(old, (sent_at, old[1] - timedelta(seconds=11)), sent_at)
    assert eta.moved(old, (sent_at, old[1] + timedelta(seconds=11)), sent_at)

"""The time limits genline puts on its database link (pipeline.store.dblink)."""
from __future__ import annotations

from pipeline.store import dblink

URL = "postgresql://genline@db.internal:5432/genline"


def test_every_wait_on_the_link_is_bounded_at_both_ends():
    # Given the defaults: 3 s to connect, 5 s of silence on a link
    args = dblink.connect_args(URL, 3, 5, True)
    # Then libpq gives up connecting after 3 s, and a silent connection is dropped after about 5 s
    assert args["connect_timeout"] == 3
    assert args["tcp_user_timeout"] == 5000
    idle, interval = args["keepalives_idle"], args["keepalives_interval"]
    assert args["keepalives"] == 1 and idle + args["keepalives_count"] * interval == 5
    # And the server is asked to drop the backend of a vanished client after the same silence
    assert args["options"] == (f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
                               "-c tcp_keepalives_count=3 -c tcp_user_timeout=5000")


def test_keepalive_times_add_up_to_the_link_timeout():
    for seconds in (4, 5, 10, 20, 60, 300):
        idle, interval = dblink.keepalive_times(seconds)
        assert idle >= 1 and interval >= 1
        assert idle + dblink.KEEPALIVE_PROBES * interval == seconds


def test_zero_leaves_the_os_defaults_and_the_server_options_can_be_left_off():
    assert dblink.connect_args(URL, 3, 0, True) == {"connect_timeout": 3}
    assert "options" not in dblink.connect_args(URL, 3, 5, False)


def test_what_the_url_sets_wins():
    # Given a DATABASE_URL that sets its own connect timeout and server options
    args = dblink.connect_args(URL + "?connect_timeout=10&options=-c%20tcp_user_timeout%3D9000", 3, 5, True)
    # Then its connect timeout is left alone, and its options come last (Postgres keeps the last of a name)
    assert "connect_timeout" not in args
    assert args["options"].endswith(" -c tcp_user_timeout=9000")


def test_sqlite_gets_none():
    assert dblink.connect_args("sqlite:///var/genline.db", 3, 5, True) == {}

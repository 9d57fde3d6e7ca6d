"""`make soak`'s short form: a month unattended in about half a minute (tests/soak.py says
what runs and what is asserted; `make soak` runs a year)."""

import soak


def test_a_month_unattended_loses_nothing_and_alerts_once(tmp_path):
    figures = soak.run(30, 300, "7d", seed=1, work=tmp_path, rate=600, cap_share=3.0)
    assert figures["inDatabase"] + figures["archived"] == figures["events"] == 9000
    assert figures["archived"] > 0 and figures["receiverStarts"] == 3

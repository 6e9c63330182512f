from console_apptest import open_page, texts


def test_overview_shows_todays_kpis_against_targets(console_env):
    at = open_page("overview")
    metrics = {m.label: m for m in at.metric}
    assert metrics["Messages today"].value == "4"
    # 2 escalations / (1 agent answer + 2 escalations)
    assert metrics["Escalation rate"].value == "67%"
    assert "target ≤ 25%" in metrics["Escalation rate"].delta
    assert metrics["SLA breaches today"].value == "1"
    assert metrics["Open escalations"].value == "2"
    assert metrics["p95 first response"].value.endswith(" s")
    assert "first_response_p95" in at.dataframe[0].value["kind"].tolist()
    assert "Messages a minute" in texts(at)

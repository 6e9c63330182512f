from flows.sentiment import Trend, score


def test_score_is_negative_for_an_angry_message_and_positive_for_thanks():
    assert score("This is terrible, I am furious and disgusted with your awful service") < -0.6
    assert score("Thank you so much, great help, I love it!") > 0.6


def test_score_stays_in_range_and_handles_empty_text():
    assert score("") == 0.0
    assert score("   ") == 0.0
    for text in ["bad " * 500, "good " * 500, "where is my order?"]:
        assert -1.0 <= score(text) <= 1.0


def test_trend_is_immutable_and_tracks_a_moving_mean():
    t0 = Trend()
    t1 = t0.update(0.5)
    assert t0.count == 0 and t1.count == 1 and t1.mean == 0.5
    t2 = t1.update(-0.5)
    assert -0.5 < t2.mean < 0.5


def test_trend_falls_on_steadily_worse_messages():
    t = Trend()
    for s in (0.4, 0.0, -0.3, -0.6):
        t = t.update(s)
    assert t.falling


def test_trend_not_falling_when_mood_recovers_or_too_few_messages():
    t = Trend().update(0.4).update(-0.6)
    assert not t.falling  # two messages are not a trend
    for s in (0.4, -0.5, 0.3, 0.2):
        t = Trend() if s == 0.4 else t
        t = t.update(s)
    assert not t.falling
    t = Trend()
    for s in (-0.3, -0.35, -0.4):  # consistently a bit unhappy, not falling much
        t = t.update(s)
    assert not t.falling

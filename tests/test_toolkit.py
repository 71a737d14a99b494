"""Users of the original l2o toolkit (README, "Coming from the l2o toolkit")."""

from l2o.strategies import CurriculumStrategy


def test_a_list_schedule_shorter_than_max_stages_ends_the_curriculum():
    """It gave the next stage an unroll length of None; a list limits the stages to its length,
    as the toolkit documented."""
    progress = {"stage": 0, "periods": 1, "stage_best": 1.0, "best_before": 2.0,
                "finished": True}
    strategy = CurriculumStrategy(schedule=[3], max_stages=2)
    assert strategy.should_stop(progress)
    assert not CurriculumStrategy(schedule=[3, 5], max_stages=2).should_stop(progress)
    assert CurriculumStrategy(schedule=[3, 5], max_stages=1).should_stop(progress)

import pytest

from notifier.metrics import PROCESS_METRICS


class Figures:
    """This process's counters, read by series name and labels (prometheus-client's own reader)."""

    def __call__(self, name: str, **labels) -> float:
        return PROCESS_METRICS.get_sample_value(name, labels) or 0.0


@pytest.fixture
def figures():
    return Figures()

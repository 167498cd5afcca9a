"""HellaSwag accuracy as an `evaluate` metric: ``evaluate.load("<path to this folder>")`` works offline.

Inputs per example: the four endings' summed log-likelihoods, the endings' lengths in characters, and the gold
index. Outputs lm-evaluation-harness's ``acc`` (argmax of log-likelihood) and ``acc_norm`` (argmax of log-likelihood
per character), with their standard errors.
"""

import math

import datasets
import evaluate

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 4-float lists, each ending's summed log-likelihood.
    references: list of ints, the gold ending index (0-3).
    choice_lengths: list of 4-int lists, each ending's length in characters (for acc_norm).
Returns:
    acc, acc_norm, acc_stderr, acc_norm_stderr, n
"""


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HellaswagAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, choice_lengths):
        def argmax(scores):
            return max(range(len(scores)), key=lambda j: scores[j])

        correct = [float(argmax(p) == r) for p, r in zip(predictions, references)]
        normed = [[s / n for s, n in zip(p, lengths)] for p, lengths in zip(predictions, choice_lengths)]
        correct_norm = [float(argmax(p) == r) for p, r in zip(normed, references)]
        acc, acc_stderr = _mean_stderr(correct)
        acc_norm, acc_norm_stderr = _mean_stderr(correct_norm)
        return {"acc": acc, "acc_norm": acc_norm, "acc_stderr": acc_stderr, "acc_norm_stderr": acc_norm_stderr,
                "n": len(correct)}  # fmt: skip

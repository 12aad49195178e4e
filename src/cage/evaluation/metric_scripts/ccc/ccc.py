"""Lin's concordance correlation coefficient (CCC) as an offline `evaluate` metric.

Load by path: ``evaluate.load("<this folder>/ccc.py")`` or ``cage.evaluation.load_evaluate_metric("ccc")``.
The computation is ``cage.evaluation.metrics.concordance_correlation_coefficient`` (one implementation).
"""

import datasets
import evaluate

from cage.evaluation.metrics import concordance_correlation_coefficient

_DESCRIPTION = (
    "CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2) with consistent 1/n moments (Lin 1989). "
    "Range [-1, 1]; NaN when both series are constant and equal. NaN inputs raise ValueError."
)
_CITATION = (
    "@article{lin1989concordance, title={A concordance correlation coefficient to evaluate reproducibility}, "
    "author={Lin, Lawrence I-Kuei}, journal={Biometrics}, volume={45}, number={1}, pages={255--268}, year={1989}}"
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): predicted values, e.g. valence in [-1, 1].
    references (list of float): ground truth values, same length.
Returns:
    ccc (float): the concordance correlation coefficient.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ccc(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"ccc": concordance_correlation_coefficient(predictions, references)}

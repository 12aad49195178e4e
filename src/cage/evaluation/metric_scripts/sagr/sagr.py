"""Sign agreement (SAGR) as an offline `evaluate` metric.

Load by path: ``evaluate.load("<this folder>/sagr.py")`` or ``cage.evaluation.load_evaluate_metric("sagr")``.
The computation is ``cage.evaluation.metrics.sign_agreement`` (one implementation).
"""

import datasets
import evaluate

from cage.evaluation.metrics import sign_agreement

_DESCRIPTION = (
    "SAGR = mean(sign(prediction) == sign(reference)), numpy sign (-1, 0, +1); range [0, 1] "
    "(Kossaifi et al. 2017). NaN inputs raise ValueError."
)
_CITATION = (
    "@article{kossaifi2017afew, title={AFEW-VA database for valence and arousal estimation in-the-wild}, "
    "author={Kossaifi, Jean and Tzimiropoulos, Georgios and Todorovic, Sinisa and Pantic, Maja}, "
    "journal={Image and Vision Computing}, volume={65}, pages={23--36}, year={2017}}"
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): predicted values, e.g. valence in [-1, 1].
    references (list of float): ground truth values, same length.
Returns:
    sagr (float): share of predictions with the reference's sign.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sagr(evaluate.Metric):
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
        return {"sagr": sign_agreement(predictions, references)}

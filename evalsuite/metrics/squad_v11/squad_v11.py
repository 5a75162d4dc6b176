"""SQuAD v1.1 exact match and F1 as an ``evaluate`` module (load it with ``evaluate.load(<this folder>)``).

Inputs use the Hugging Face ``squad`` layout: ``predictions=[{"id", "prediction_text"}]`` and
``references=[{"id", "answers": {"text": [...], "answer_start": [...]}}]``. Questions are scored in the order of
``references`` (the dataset order), a reference without a prediction (or with ``prediction_text`` null) scores
0, and the result is
``{"exact_match": ..., "f1": ...}`` in percent, as the official v1.1 script prints it. The scoring rules live in
``squad_scoring.py`` next to this file, shared with evalsuite's per-case ``squad`` scorer.
"""

import datasets
import evaluate

from .squad_scoring import aggregate

_DESCRIPTION = "SQuAD v1.1 exact match and token F1 with the official answer normalisation."
_CITATION = (
    "@inproceedings{rajpurkar-etal-2016-squad, title={SQuAD: 100,000+ Questions for Machine Comprehension of "
    "Text}, author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy}, year={2016}}"
)
_INPUTS = "predictions: list of {id, prediction_text}; references: list of {id, answers: {text, answer_start}}"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class SquadV11(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {
                    "id": datasets.Value("string"),
                    "answers": datasets.features.Sequence(
                        {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                    ),
                },
            }),
        )

    def _compute(self, predictions, references):
        by_id = {p["id"]: p["prediction_text"] for p in predictions}
        return aggregate([(by_id.get(r["id"]), list(r["answers"]["text"])) for r in references])

"""Classification metrics for hf-tasks: accuracy, macro F1, per-class accuracy and the confusion matrix.

An ``evaluate`` module loaded by path (``hf_tasks.metrics.load_metric("accuracy")``), so it works offline and its
code is versioned with the project instead of fetched from the Hub.

Two constraints come from evaluate's loader and shape how this file is written:
- it scans the import lines to check dependencies, so each line imports exactly one module;
- it instantiates the *first* ``EvaluationModule`` subclass found in the module namespace, so the base class is
  referenced as ``evaluate.Metric`` and never imported by name (a bare ``Metric`` would be picked instead).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Single-label classification metrics from one confusion matrix: accuracy, macro F1, per-class accuracy (recall)
and the confusion matrix itself (rows = true class, columns = predicted class).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids. An id that is not an integer (0.5, NaN, "1", None) raises a
        ValueError naming the argument and the sample index (integral floats such as 1.0 are accepted).
    num_labels (`int`, *optional*): number of classes. When given, every id must lie in [0, num_labels) and the
        per-class outputs have exactly num_labels entries. When omitted it is max(id) + 1.
    label_names (`list` of `str`, *optional*): class names; adds `per_class_accuracy_by_name`. Its length fixes
        num_labels when num_labels is omitted.
Returns:
    accuracy (`float`): fraction of exact matches.
    macro_f1 (`float`): unweighted mean F1. With num_labels given it averages over all num_labels classes, as
        `sklearn.metrics.f1_score(average="macro", labels=range(num_labels))`; a class absent from both
        references and predictions then counts as F1 = 0 (sklearn's zero_division=0 convention). Without
        num_labels it averages over the classes present in references or predictions, as sklearn does by default.
    per_class_accuracy (`list` of `float` or `None`): recall of each class 0..num_labels-1; `None` for a class
        with no references (its accuracy is undefined, and JSON has no NaN).
    confusion_matrix (`list` of `list` of `int`): num_labels x num_labels counts, rows = true, cols = predicted.
    num_samples (`int`): number of (prediction, reference) pairs.
Examples:
    >>> metric = hf_tasks.metrics.load_metric("accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=2)["accuracy"]
    0.6666666666666666
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


class Accuracy(evaluate.Metric):
    """Accuracy and friends, all derived from one confusion matrix so they can never disagree."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Check every id is an integer before evaluate's int64 storage would truncate 0.5 to 0 or fail on NaN;
        errors name the sample by its index among all samples added since the last ``compute``."""
        start = getattr(self, "_added", 0) if self.writer is not None else 0  # compute() closes the writer
        for name, values in (("predictions", predictions), ("references", references)):
            if values is not None:
                class_ids(values, name, start)
        out = super().add_batch(predictions=predictions, references=references, **kwargs)
        self._added = start + len(predictions if predictions is not None else references or [])
        return out

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Single-sample counterpart of ``add_batch``, with the same checks."""
        return self.add_batch(predictions=None if prediction is None else [prediction],
                              references=None if reference is None else [reference], **kwargs)

    def _compute(self, predictions, references, num_labels=None, label_names=None):
        preds = np.asarray(predictions, dtype=np.int64).reshape(-1)
        refs = np.asarray(references, dtype=np.int64).reshape(-1)
        if refs.size == 0:
            raise ValueError("cannot compute accuracy on zero samples")
        n = _resolve_num_labels(preds, refs, num_labels, label_names)
        cm = confusion_matrix(preds, refs, n)
        result = {
            "accuracy": float(np.trace(cm) / refs.size),
            "macro_f1": macro_f1(cm, all_classes=num_labels is not None or label_names is not None),
            "per_class_accuracy": per_class_accuracy(cm),
            "confusion_matrix": cm.tolist(),
            "num_samples": int(refs.size),
        }
        if label_names is not None:
            result["per_class_accuracy_by_name"] = dict(zip(label_names, result["per_class_accuracy"]))
        return result


def class_ids(values, name, start=0):
    """``values`` as int64 class ids; a ValueError names the first one that is not an integer (``name[i]``).

    Integers of any kind (Python, numpy, torch tensors, bools) and integral floats (1.0) are class ids; a
    fractional, NaN or infinite float, a string, None or a nested list is not.
    """
    array = np.asarray(values if hasattr(values, "dtype") else np.array(values, dtype=object))
    if array.dtype.kind in "iub":  # integer arrays and tensors: checked at once
        return array.astype(np.int64).reshape(-1)
    for i, value in enumerate(array.reshape(-1).tolist()):
        value = value.item() if isinstance(value, np.generic) else value
        if not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ValueError(f"{name}[{start + i}] is {value!r} ({type(value).__name__}): not an integer class id")
    return array.astype(np.int64).reshape(-1)


def _resolve_num_labels(preds, refs, num_labels, label_names):
    """Number of classes, checking every id is inside [0, num_labels)."""
    if label_names is not None:
        if num_labels is not None and num_labels != len(label_names):
            raise ValueError(f"num_labels={num_labels} but {len(label_names)} label_names were given")
        num_labels = len(label_names)
    lowest = int(min(preds.min(), refs.min()))
    if lowest < 0:
        raise ValueError(f"class ids must be >= 0, got {lowest}")
    highest = int(max(preds.max(), refs.max()))
    if num_labels is None:
        return highest + 1
    if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    if highest >= num_labels:
        raise ValueError(f"class id {highest} is out of range for num_labels={num_labels}")
    return int(num_labels)


def confusion_matrix(preds, refs, num_labels):
    """Counts with rows = true class and columns = predicted class, like ``sklearn.metrics.confusion_matrix``."""
    flat = np.bincount(refs * num_labels + preds, minlength=num_labels * num_labels)
    return flat.reshape(num_labels, num_labels)


def per_class_accuracy(cm):
    """Recall of each class; ``None`` where the class has no references (undefined, and NaN is not JSON)."""
    support = cm.sum(axis=1)
    return [float(cm[i, i] / support[i]) if support[i] > 0 else None for i in range(len(cm))]


def macro_f1(cm, all_classes):
    """Mean per-class F1, with sklearn's conventions.

    ``all_classes=True`` averages over every class (sklearn with ``labels=range(num_labels)``); otherwise only over
    classes present in references or predictions (sklearn's default label set). F1 of a class with no true
    positives is 0, which is what sklearn's ``zero_division`` gives for the classes it keeps.
    """
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    if not all_classes:
        f1 = f1[denominator > 0]
    return float(f1.mean())

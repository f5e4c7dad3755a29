"""Corpus BLEU for hf-tasks captioning, as an ``evaluate`` module wrapping sacrebleu.

Loaded by path (``hf_tasks.metrics.load_metric("bleu")``), so it works offline. Every number is sacrebleu's: we
only reshape per-image reference lists into sacrebleu's reference streams and read its sufficient statistics.

Images may have different numbers of references. sacrebleu takes references as *streams* (stream j holds the
j-th reference of every segment), so each stream must cover every segment; a segment with fewer references is
padded with ``None``, which ``BLEU._cache_references`` drops before extracting n-grams and lengths. The padding
must be ``None`` and not ``""``: an empty string is kept as a real zero-length reference and changes both the
closest reference length and the result.

evaluate's loader scans top-level import lines (one module per line) and instantiates the first
``EvaluationModule`` subclass it finds, so the base class is referenced as ``evaluate.Metric``.
"""

from typing import Any

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """
Corpus-level BLEU (Papineni et al., 2002) computed by sacrebleu, with any number of references per image, plus the
cumulative BLEU-1..4 usually reported for image captioning.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): one hypothesis per image; empty strings are allowed. A prediction that is not
        a string, or a reference neither a string nor None, raises a ValueError naming the argument and sample.
    references (`list` of `list` of `str`): the references of each image, any non-zero number per image (a plain
        `str` counts as one reference). `None` entries are dropped, as sacrebleu drops them; `""` is a reference.
    tokenize (`str`, default "13a"): sacrebleu tokenizer ("13a", "intl", "char", "none", ...).
    lowercase (`bool`, default False): lowercase hypotheses and references before tokenizing.
    smooth_method (`str`, default "exp"): sacrebleu smoothing, one of "exp", "floor", "add-k", "none".
    smooth_value (`float`, *optional*): value for "floor" / "add-k"; None means sacrebleu's default.
Returns:
    bleu (`float`): sacrebleu's corpus BLEU (max n-gram order 4) / 100, so in [0, 1].
    bleu1, bleu2, bleu3, bleu4 (`float`): cumulative BLEU-n / 100 = BP * exp(mean of log p_1..p_n), uniform
        weights over 1..n-grams, i.e. `sacrebleu.BLEU(max_ngram_order=n).corpus_score(...)`; bleu4 == bleu.
    precisions (`list` of `float`): sacrebleu's modified 1..4-gram precisions / 100 (after smoothing, as
        sacrebleu reports them).
    brevity_penalty (`float`), length_ratio (`float`, hyp_len / ref_len), hyp_len (`int`), ref_len (`int`): the
        reference length of each image is the length of its reference closest to the hypothesis (shorter on ties).
    variant (`str`): which BLEU this is, in words; signature (`str`): sacrebleu's own signature string.
    num_samples (`int`): number of images.
Examples:
    >>> metric = hf_tasks.metrics.load_metric("bleu")
    >>> round(metric.compute(predictions=["a cat on a mat"], references=[["a cat on a mat", "a cat"]])["bleu"], 6)
    1.0
"""

_CITATION = """
@inproceedings{post-2018-call,
  title = "A Call for Clarity in Reporting {BLEU} Scores",
  author = "Post, Matt",
  booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
  year = "2018",
  pages = "186--191",
}
"""

MAX_ORDER = 4


class Bleu(evaluate.Metric):
    """sacrebleu corpus BLEU over variable-size reference sets, plus cumulative BLEU-1..4 from the same counts."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Check every caption is a string (errors name the sample by its index among all samples added since the
        last ``compute``); a bare string reference becomes a one-element list (evaluate would split it into chars)."""
        start = getattr(self, "_added", 0) if self.writer is not None else 0  # compute() closes the writer
        if predictions is not None:
            predictions = [_check_prediction(p, start + i) for i, p in enumerate(predictions)]
        if references is not None:
            references = [_check_references(r, start + i) for i, r in enumerate(references)]
        out = super().add_batch(predictions=predictions, references=references, **kwargs)
        self._added = start + len(predictions if predictions is not None else references or [])
        return out

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Single-sample counterpart of ``add_batch``, with the same checks and string handling."""
        return self.add_batch(predictions=None if prediction is None else [prediction],
                              references=None if reference is None else [reference], **kwargs)

    def _compute(self, predictions, references, tokenize="13a", lowercase=False, smooth_method="exp",
                 smooth_value=None):
        hypotheses = list(predictions)
        ref_lists = [_clean_references(refs, i) for i, refs in enumerate(references)]
        if not hypotheses:
            raise ValueError("cannot compute bleu on zero samples")
        if len(hypotheses) != len(ref_lists):
            raise ValueError(f"{len(hypotheses)} predictions but {len(ref_lists)} reference lists")
        streams = reference_streams(ref_lists)
        args = {"tokenize": tokenize, "lowercase": lowercase, "smooth_method": smooth_method,
                "smooth_value": smooth_value}
        scorer = sacrebleu.BLEU(**args, max_ngram_order=MAX_ORDER)
        score = scorer.corpus_score(hypotheses, streams)
        result = {"bleu": score.score / 100}
        for n in range(1, MAX_ORDER):
            result[f"bleu{n}"] = cumulative_bleu(score, n, args, hypotheses, streams) / 100
        result["bleu4"] = result["bleu"]
        result.update({
            "precisions": [p / 100 for p in score.precisions],
            "brevity_penalty": score.bp,
            "length_ratio": score.ratio,
            "hyp_len": int(score.sys_len),
            "ref_len": int(score.ref_len),
            "variant": _variant(tokenize, lowercase, smooth_method),
            "signature": str(scorer.get_signature()),
            "num_samples": len(hypotheses),
        })
        return result


def _describe(value: Any) -> str:
    return "None" if value is None else f"{value!r} ({type(value).__name__})"


def _check_prediction(prediction: Any, index: int) -> str:
    if not isinstance(prediction, str):
        raise ValueError(f"predictions[{index}] is {_describe(prediction)}: a prediction must be a string ('' for "
                         "an empty caption)")
    return prediction


def _check_references(refs: Any, index: int) -> list | None:
    """One image's references as a list of strings and Nones (a bare string is one reference; None: none)."""
    if refs is None or isinstance(refs, str):
        return refs if refs is None else [refs]
    refs = refs.tolist() if hasattr(refs, "tolist") else refs  # numpy arrays of strings
    if not isinstance(refs, (list, tuple)):
        raise ValueError(f"references[{index}] is {_describe(refs)}: references must be a list of strings (or one "
                         "string) per image")
    for j, ref in enumerate(refs):
        if ref is not None and not isinstance(ref, str):
            raise ValueError(f"references[{index}][{j}] is {_describe(ref)}: a reference must be a string (None "
                             "entries are dropped)")
    return list(refs)


def _clean_references(refs: Any, index: int) -> list[str]:
    """One image's references as a list of strings, None entries dropped (as sacrebleu drops them)."""
    refs = [r for r in (refs or []) if r is not None]
    if not refs:
        raise ValueError(f"image {index} has no reference: BLEU needs at least one per image")
    return refs


def reference_streams(ref_lists: list[list[str]]) -> list[list[str | None]]:
    """Per-image reference lists → sacrebleu's reference streams, padding short lists with None (dropped by
    sacrebleu per segment; see the module docstring for why not "")."""
    width = max(len(refs) for refs in ref_lists)
    return [[refs[j] if j < len(refs) else None for refs in ref_lists] for j in range(width)]


def cumulative_bleu(score: Any, n: int, scorer_args: dict, hypotheses: list[str], streams: list) -> float:
    """BLEU-n (0-100), identical to ``sacrebleu.BLEU(max_ngram_order=n).corpus_score``.

    The first n match/total counts, the hypothesis length and the closest reference lengths do not depend on the
    maximum order, so BLEU-n is ``BLEU.compute_bleu`` on the order-4 score's first n counts: one tokenization
    pass serves all four scores. "add-k" is the exception: sacrebleu adds k to the stored counts in place, so
    those counts are no longer raw and BLEU-n is recomputed from scratch instead.
    """
    if scorer_args["smooth_method"] == "add-k":
        return sacrebleu.BLEU(**scorer_args, max_ngram_order=n).corpus_score(hypotheses, streams).score
    bleu = sacrebleu.BLEU.compute_bleu(list(score.counts[:n]), list(score.totals[:n]), score.sys_len,
                                       score.ref_len, smooth_method=scorer_args["smooth_method"],
                                       smooth_value=scorer_args["smooth_value"], max_ngram_order=n)
    return bleu.score


def _variant(tokenize: str, lowercase: bool, smooth_method: str) -> str:
    """Human-readable name of the BLEU computed, for results files and model cards."""
    case = ", lowercased" if lowercase else ""
    return (f"sacrebleu {sacrebleu.__version__} corpus BLEU-4, tokenize={tokenize}{case}, smooth={smooth_method}, "
            "brevity penalty vs closest reference length, variable references per image")

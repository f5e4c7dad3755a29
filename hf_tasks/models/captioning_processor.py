"""The processor saved with every captioning model: image processor + tokenizer, shaped for an encoder-decoder.

Why our own class: in transformers 5 the ``image-to-text`` pipeline task is gone; ``pipeline("image-to-text")``
is redirected to ``image-text-to-text``, whose pipeline (``ImageTextToTextPipeline``) accepts
``VisionEncoderDecoderModel`` (it is in ``MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING``) but always

1. loads a *processor* with ``AutoProcessor`` (never a bare tokenizer/image processor),
2. calls ``processor(images=..., text=prompt, return_tensors="pt")`` — ``text`` is required (``""`` for captioning),
3. reads ``input_ids`` or else ``decoder_input_ids`` from the result and passes everything to ``model.generate``,
4. decodes with ``processor.post_process_image_text_to_text``.

``TrOCRProcessor``, the stock image+tokenizer processor, returns the prompt as ``labels`` and so fails step 3
(``KeyError: 'decoder_input_ids'``). :class:`CaptioningProcessor` returns ``pixel_values`` and
``decoder_input_ids = [bos] + prompt tokens``, so ``generate`` continues the prompt (an empty prompt = plain
captioning). ``import hf_tasks.models`` registers it with ``AutoProcessor`` so the saved
``processor_config.json`` (``"processor_class": "CaptioningProcessor"``) resolves.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import BatchFeature, ProcessorMixin


class CaptioningProcessor(ProcessorMixin):
    """``processor(images, text="") -> {pixel_values, decoder_input_ids}``; ``batch_decode`` for the output ids."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer)

    def __call__(self, images: Any = None, text: str | list[str] | None = None, return_tensors: str | None = "pt",
                 **kwargs: Any) -> BatchFeature:
        """Pixels for ``images``; ``text`` is a caption prefix for every image ("" or None: caption from scratch).

        Prompts in one batch must tokenize to the same length, since the decoder is not told about left padding.
        """
        if images is None and text is None:
            raise ValueError("pass images (and optionally a caption prefix as text)")
        data: dict[str, Any] = {}
        if images is not None:
            data.update(self.image_processor(images, return_tensors="pt"))
        if text is not None or images is not None:
            data["decoder_input_ids"] = self._prompt_ids(text, len(data.get("pixel_values", [None])))
        return BatchFeature(data, tensor_type=return_tensors)

    def _prompt_ids(self, text: str | list[str] | None, batch: int) -> torch.Tensor:
        prompts = [text or ""] * batch if text is None or isinstance(text, str) else list(text)
        rows = [[self.tokenizer.bos_token_id] + self.tokenizer(p, add_special_tokens=False)["input_ids"]
                for p in prompts]
        if len({len(row) for row in rows}) > 1:
            raise ValueError("caption prefixes in one batch must have the same number of tokens")
        return torch.tensor(rows, dtype=torch.long)

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens: bool = True,
                                        **kwargs: Any) -> list[str]:
        """What the image-text-to-text pipeline calls: one string per generated row."""
        return self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "decoder_input_ids"]


__all__ = ["CaptioningProcessor"]

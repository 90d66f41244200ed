"""Speech data sources: the embedded synthetic corpus and readers of real formats.

- ``text.py``: :func:`normalize_text` (shared with the model's metrics), :data:`ALPHABET`.
- ``lexicon.py`` / ``grammar.py``: the sentence grammar of the embedded corpus.
- ``synth.py``: libespeak-ng through ctypes, with word timings.
- ``corpus.py``: :func:`embedded_corpus` (generation + cache), voices, presets.
- ``manifest.py``: :class:`AudioEntry`, :class:`WordTiming`, NeMo JSON-lines manifests.
- ``librispeech.py``: the LibriSpeech folder layout.
"""

"""Speech recognition with joint CTC/attention (hybrid CTC/attention, Kim, Hori & Watanabe 2017).

Data half: ``audio.py`` (reading any audio file as 16 kHz mono, segmenting long recordings),
``dataset.py`` (:class:`SpeechDataset` over every source) and ``sources/`` (the embedded espeak-ng
corpus with word timings, LibriSpeech and NeMo manifest readers, text normalisation).
"""

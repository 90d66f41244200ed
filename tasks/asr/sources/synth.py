"""Speech synthesis with libespeak-ng through ctypes, with each word's true timing.

The library and its data come from the ``espeakng-loader`` wheel (libespeak-ng 1.52), so no
system package is needed. In ``AUDIO_OUTPUT_SYNCHRONOUS`` mode ``espeak_Synth`` returns only when
the utterance is done, having called our callback with blocks of 16-bit samples (22,050 Hz) and
events; a word event (``espeakEVENT_WORD``) gives the word's 1-based character position in the
text and its sample index in the audio: the ground-truth word starts that the alignment metrics
of the speech task are scored against.

libespeak-ng keeps global state and is not thread-safe: use one :class:`EspeakSynthesizer` per
process. That state also carries over between utterances (pitch flutter phase, filter memory,
``espeak_Terminate`` does not reset it): a fixed sequence of utterances in a fresh process gives
identical bytes, the same utterance after a different history does not. ``corpus.py`` therefore
synthesises fixed chunks, each in a fresh process. Random noise (breathy variants) is reseeded per
utterance (C ``srand`` and ``espeak_ng_SetRandSeed``).

Shapes: ``N`` samples.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["SynthesisResult", "EspeakSynthesizer", "word_character_starts"]

# speak_lib.h enums
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_INITIALIZE_PHONEME_EVENTS = 0x0001
_PHONEME_SEPARATOR = ord("_") << 8  # espeak_TextToPhonemes: separate phonemes with "_"
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class SynthesisResult:
    """One synthesised utterance at the synthesiser's native rate.

    Attributes:
        samples: ``(N,)`` int16 waveform.
        sample_rate: its rate (22,050 Hz for espeak-ng).
        word_starts: per input word, the sample where espeak starts it (``None`` if no event).
    """

    samples: np.ndarray
    sample_rate: int
    word_starts: list[int | None]


def word_character_starts(text: str) -> list[int]:
    """0-based character offset of every space-separated word of ``text``."""
    starts, position = [], 0
    for word in text.split(" "):
        if word:
            starts.append(position)
        position += len(word) + 1
    return starts


class EspeakSynthesizer:
    """libespeak-ng in synchronous mode, one instance per process.

    Args:
        library_path: the shared library (default: ``espeakng_loader.get_library_path()``).
        data_path: the ``espeak-ng-data`` folder (default: ``espeakng_loader.get_data_path()``).
    """

    def __init__(self, *, library_path: str | None = None, data_path: str | None = None) -> None:
        from multiattn.extras import require

        espeakng_loader = require("espeakng_loader", "the embedded speech corpus (espeak-ng)")

        self._lib = ctypes.CDLL(library_path or espeakng_loader.get_library_path())
        # the process's own symbols include libc's srand on POSIX (no ldconfig subprocess)
        self._srand = getattr(ctypes.CDLL(None), "srand", None) if os.name == "posix" else None
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_rand_seed is not None:
            self._set_rand_seed.argtypes = [ctypes.c_long]
        data = (data_path or espeakng_loader.get_data_path()).encode()
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_PHONEME_EVENTS
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data.decode()})")
        self._blocks: list[np.ndarray] = []
        self._events: list[tuple[int, int]] = []  # word events: (1-based text position, sample index)
        self._phonemes: list[tuple[int, int]] = []  # phoneme events: (text position of their word, sample)
        self._callback = _Callback(self._on_synth)  # kept referenced: C holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_synth(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._blocks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_WORD:
                self._events.append((event.text_position, event.sample))
            elif event.type == _EVENT_PHONEME:
                name = event.id.split(b"\0")[0]
                if name and not name.startswith(b"_") and name != b";":  # pauses and markers
                    self._phonemes.append((event.text_position, event.sample))
            index += 1
        return 0  # 0 = continue synthesis

    def has_voice(self, voice: str) -> bool:
        """``True`` when ``voice`` (e.g. ``"en-us+f3"``) exists in the bundled data."""
        ok = self._lib.espeak_SetVoiceByName(voice.encode()) == _EE_OK
        self._voice = voice if ok else None
        return ok

    def synthesize(
        self, text: str, *, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0
    ) -> SynthesisResult:
        """Speak ``text`` (words separated by single spaces).

        Args:
            text: the utterance; word timings are reported per space-separated word.
            voice: espeak voice name with optional variant, e.g. ``"en-us+m3"``, ``"en-gb-scotland"``.
            rate: speaking rate in words per minute (80..450).
            pitch: base pitch 0..100 (50 = the voice's normal).
            seed: reseeds the C ``rand()`` used by breathy variants, for identical bytes.

        Returns:
            :class:`SynthesisResult`. espeak joins some unstressed function words to a neighbour
            ("in the", "there are") and reports one word event for the group; the start of a
            joined word is then the group's phoneme at which it begins, counted with
            ``espeak_TextToPhonemes`` on the words before it.
        """
        if voice != self._voice and not self.has_voice(voice):
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self._lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        if self._srand is not None:
            self._srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        if self._set_rand_seed is not None:
            self._set_rand_seed(seed & 0x7FFFFFFF)
        self._blocks, self._events, self._phonemes = [], [], []
        encoded = text.encode("utf-8")
        status = self._lib.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        samples = np.concatenate(self._blocks) if self._blocks else np.zeros(0, dtype=np.int16)
        starts = self._word_starts(text)
        return SynthesisResult(
            samples=samples.astype(np.int16), sample_rate=self.sample_rate, word_starts=starts
        )

    def phoneme_count(self, word: str) -> int:
        """Number of phonemes espeak gives ``word`` alone (current voice)."""
        pointer = ctypes.c_char_p(word.encode("utf-8"))
        phonemes = self._lib.espeak_TextToPhonemes(
            ctypes.byref(pointer), _ESPEAK_CHARS_UTF8, _PHONEME_SEPARATOR
        )
        return len([p for p in (phonemes or b"").split(b"_") if p.strip()])

    def _word_starts(self, text: str) -> list[int | None]:
        """Start sample of every word: its word event, or its phoneme inside a joined group."""
        by_position: dict[int, int] = {}
        for position, sample in self._events:
            by_position.setdefault(position - 1, sample)  # first event of a word wins
        group_phonemes: dict[int, list[int]] = {}
        for position, sample in self._phonemes:
            group_phonemes.setdefault(position - 1, []).append(sample)
        words = [w for w in text.split(" ") if w]
        starts: list[int | None] = []
        head, offset = None, 0  # character start of the current group's first word; phonemes since it
        for word, char_start in zip(words, word_character_starts(text)):
            if char_start in by_position:
                starts.append(by_position[char_start])
                head, offset = char_start, self.phoneme_count(word)
                continue
            phonemes = group_phonemes.get(head, []) if head is not None else []
            if offset < len(phonemes):
                starts.append(max(phonemes[offset], starts[-1] or 0))
            else:
                starts.append(None)
            offset += self.phoneme_count(word)
        return starts

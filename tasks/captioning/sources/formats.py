"""Readers for the caption formats users bring: COCO captions, Karpathy split JSON, Flickr8k.

Each reader returns :class:`CaptionRecord` s (an image path, its reference captions and its
split), so one dataset class serves all three. Formats (docs/conventions.md, "Data formats"):

- COCO captions JSON (Lin et al. 2014): ``images[]`` with ``id``, ``file_name``; ``annotations[]``
  with ``image_id``, ``caption``. One file per split (``captions_train2014.json`` ...).
- Karpathy split JSON (Karpathy and Fei-Fei 2015, ``dataset_coco.json`` / ``dataset_flickr8k.json``):
  ``images[]`` with ``filepath`` (COCO only), ``filename``, ``split`` in train | val | test | restval,
  ``sentences[]`` with ``raw`` and ``tokens``. ``restval`` counts as training data by default.
- Flickr8k: ``Flickr8k.token.txt`` lines ``<image>.jpg#<k>\\t<caption>`` plus the split lists
  ``Flickr_8k.trainImages.txt`` / ``devImages`` / ``testImages`` (one file name a line).

A file that is missing or does not parse raises :class:`multiattn.io.UserError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiattn.io import UserError

__all__ = ["CaptionRecord", "load_coco", "load_karpathy", "load_flickr8k", "FORMATS"]

FORMATS = ("coco", "karpathy", "flickr8k")


@dataclass
class CaptionRecord:
    """One image and its references.

    Attributes:
        image_path: where the image file is.
        references: every reference caption (raw text).
        split: ``train``, ``val`` or ``test``.
        image_id: the dataset's id for the image (COCO id, Karpathy ``cocoid``/``imgid``, file name).
    """

    image_path: str
    references: list[str]
    split: str
    image_id: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path}: not a readable JSON file ({type(error).__name__}: {error})") from None


def _read_lines(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable text file ({type(error).__name__})") from None


def load_coco(annotations: str | Path, image_dir: str | Path, *, split: str) -> list[CaptionRecord]:
    """Read a COCO captions file (``captions_<split>2014.json``); images are ``image_dir/file_name``.

    Images without any caption are left out (they cannot be trained on or scored).
    """
    data = _read_json(annotations)
    try:
        files = {int(img["id"]): str(img["file_name"]) for img in data["images"]}
        captions: dict[int, list[str]] = {}
        for ann in data["annotations"]:
            captions.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]).strip())
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{annotations}: not a COCO captions file (missing or bad field {error})") from None
    unknown = set(captions) - set(files)
    if unknown:
        raise UserError(f"{annotations}: captions refer to {len(unknown)} image ids missing from images[]")
    root = Path(image_dir)
    return [
        CaptionRecord(str(root / files[i]), captions[i], split, i) for i in sorted(files) if captions.get(i)
    ]


def load_karpathy(
    path: str | Path,
    image_root: str | Path,
    *,
    restval_to: str = "train",
) -> list[CaptionRecord]:
    """Read a Karpathy split file; images are ``image_root/filepath/filename`` (or ``image_root/filename``).

    Args:
        restval_to: the split ``restval`` images join (``train`` as in most papers, or ``drop``).
    """
    data = _read_json(path)
    root = Path(image_root)
    records = []
    try:
        for img in data["images"]:
            split = str(img["split"])
            if split == "restval":
                if restval_to == "drop":
                    continue
                split = restval_to
            if split not in ("train", "val", "test"):
                raise ValueError(f"split {split!r}")
            folder = root / img["filepath"] if img.get("filepath") else root
            refs = [
                str(s["raw"]).strip() if s.get("raw") else " ".join(s["tokens"]) for s in img["sentences"]
            ]
            image_id = img.get("cocoid", img.get("imgid"))
            records.append(CaptionRecord(str(folder / img["filename"]), refs, split, image_id))
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path}: not a Karpathy split file (missing or bad field {error})") from None
    return records


def load_flickr8k(
    token_file: str | Path, image_dir: str | Path, split_files: Mapping[str, str | Path]
) -> list[CaptionRecord]:
    """Read ``Flickr8k.token.txt`` and the split lists ``{"train": ..., "val": ..., "test": ...}``.

    Images listed in no split file are left out; a listed image without captions is an error.
    """
    captions: dict[str, list[str]] = {}
    for number, line in enumerate(_read_lines(token_file), start=1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        name, hash_sign, _ = key.partition("#")
        if not sep or not hash_sign:
            raise UserError(
                f"{token_file}:{number}: expected '<image>#<k>\\t<caption>', received {line[:60]!r}"
            )
        captions.setdefault(name.strip(), []).append(caption.strip())
    root = Path(image_dir)
    records = []
    for split, list_file in split_files.items():
        for name in (n.strip() for n in _read_lines(list_file)):
            if not name:
                continue
            if name not in captions:
                raise UserError(f"{list_file}: image {name} has no caption in {token_file}")
            records.append(CaptionRecord(str(root / name), captions[name], split, name))
    return records

"""Fonts for the broad embedded digits: which exist on this machine, which may be used, and how to
install more.

The broad digit set (``variety: broad``) renders the digits 0-9 in every usable font face it
finds: the TrueType fonts matplotlib bundles, the system's fonts (found by matplotlib's
``font_manager.findSystemFonts``: ``/usr/share/fonts``, ``~/.fonts`` ...), and any extra folders
given. On Debian / Ubuntu ``make fonts`` (``python -m multiattn.tasks.stn.sources.fonts install``) installs
the packages in :data:`FONT_PACKAGES`: about sixty families of serif, sans, monospaced, display and
handwriting styles. Missing packages are skipped with one message; matplotlib's fonts alone are
enough to run (and to test) everything.

**Held-out families.** Liberation and GNU FreeFont are never used for training: the
out-of-generator evaluation split (:mod:`multiattn.tasks.stn.sources.outside`) draws from them, so it must
see digit shapes the model never saw. Their outlines also live on under other names, which are
refused too: FreeSans / FreeSerif / FreeMono derive from URW's Nimbus Sans / Roman / Mono (as do
all TeX Gyre families and URW's base-35 fonts), and Arimo / Tinos / Cousine are Liberation 2's
designs. :func:`is_excluded` decides by the family name stored in the font file, not the file
name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXCLUDED_FAMILIES",
    "HELD_OUT_FAMILIES",
    "FONT_PACKAGES",
    "HELD_OUT_PACKAGES",
    "FontFace",
    "is_excluded",
    "font_face",
    "discover_fonts",
    "missing_packages",
    "install_fonts",
]

# Family-name prefixes (case and spaces ignored) of the held-out families: the out-of-generator
# split renders these.
HELD_OUT_FAMILIES = ("Liberation", "FreeSans", "FreeSerif", "FreeMono")
# Never trained on: the held-out families and the families sharing their outlines.
EXCLUDED_FAMILIES = (*HELD_OUT_FAMILIES, "Nimbus", "TeX Gyre", "URW", "Arimo", "Tinos", "Cousine")

# Debian packages `make fonts` installs, by style. None of them holds an excluded family.
FONT_PACKAGES = {
    "serif": (
        "fonts-crosextra-caladea", "fonts-linuxlibertine", "fonts-ebgaramond", "fonts-sil-gentium",
        "fonts-vollkorn", "fonts-adf-accanthis", "fonts-adf-berenis", "fonts-adf-baskervald",
        "fonts-adf-tribun", "fonts-adf-oldania", "fonts-adf-irianis", "fonts-adf-romande",
        "fonts-gfs-didot", "fonts-prociono",
    ),
    "sans": (
        "fonts-open-sans", "fonts-lato", "fonts-cantarell", "fonts-crosextra-carlito",
        "fonts-roboto-unhinted", "fonts-cabin", "fonts-oxygen", "fonts-quicksand", "fonts-adf-gillius",
        "fonts-adf-universalis", "fonts-adf-switzera", "fonts-adf-verana", "fonts-dosis", "fonts-jura",
        "fonts-play", "fonts-averia-sans-gwf", "fonts-go",
    ),
    "mono": (
        "fonts-inconsolata", "fonts-hack", "fonts-firacode", "fonts-mononoki", "fonts-jetbrains-mono",
        "fonts-noto-mono", "fonts-hermit", "fonts-league-mono", "fonts-ocr-a", "fonts-ocr-b",
    ),
    "display": (
        "fonts-comfortaa", "fonts-lobster", "fonts-sixtyfour", "fonts-yanone-kaffeesatz",
        "fonts-bebas-neue", "fonts-blankenburg", "fonts-beteckna", "fonts-adf-ikarius",
        "fonts-adf-mekanus", "fonts-okolaks", "fonts-radisnoir", "fonts-averia-serif-gwf",
        "fonts-staypuft",
    ),
    "handwriting": (
        "fonts-comic-neue", "fonts-dkg-handwriting", "fonts-breip", "fonts-humor-sans",
        "fonts-femkeklaver", "fonts-kristi", "fonts-isabella", "fonts-tomsontalks",
    ),
}  # fmt: skip
# The held-out families' packages (installed for the out-of-generator split only).
HELD_OUT_PACKAGES = ("fonts-liberation", "fonts-freefont-ttf")

_DIGITS = "0123456789"


@dataclass(frozen=True)
class FontFace:
    """One usable font face.

    Attributes:
        path: the font file.
        family: family name stored in the file (e.g. ``"DejaVu Sans"``).
        style: style name stored in the file (e.g. ``"Bold Oblique"``).
    """

    path: str
    family: str
    style: str

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}"


def _normalised(name: str) -> str:
    return "".join(name.lower().split())


def is_excluded(family: str, excluded: Sequence[str] = EXCLUDED_FAMILIES) -> bool:
    """Whether a family name starts with one of ``excluded`` (case and spaces ignored)."""
    key = _normalised(family)
    return any(key.startswith(_normalised(prefix)) for prefix in excluded)


@functools.lru_cache(maxsize=4096)
def font_face(path: str) -> FontFace | None:
    """The face of a font file if it draws the ten digits as ten distinct glyphs, else ``None``.

    Symbol, icon and script-only fonts fail that check (no digit glyphs, or all digits mapped to
    one placeholder), as do files FreeType cannot read.
    """
    from matplotlib import ft2font

    try:
        font = ft2font.FT2Font(path)
        glyphs = {font.get_char_index(ord(digit)) for digit in _DIGITS}
    except (OSError, RuntimeError, ValueError):
        return None
    if 0 in glyphs or len(glyphs) != len(_DIGITS) or not font.family_name:
        return None
    return FontFace(path=str(path), family=str(font.family_name), style=str(font.style_name or "Regular"))


def _bundled_font_paths() -> list[str]:
    from matplotlib import get_data_path

    from multiattn.tasks.stn.sources.glyphs import FONT_FILES

    folder = os.path.join(get_data_path(), "fonts", "ttf")
    return [os.path.join(folder, name) for name in FONT_FILES]


def discover_fonts(
    font_dirs: Iterable[str | Path] = (),
    *,
    system: bool = True,
    excluded: Sequence[str] = EXCLUDED_FAMILIES,
) -> list[FontFace]:
    """Usable font faces: matplotlib's bundled digit fonts, the system's, and ``font_dirs``'.

    One face per (family, style), the first file in path order; excluded families are refused
    here (:func:`is_excluded`). Sorted by family and style, so the order (and hence the generated
    data) does not depend on how the file system lists folders.

    Args:
        font_dirs: extra folders searched recursively for ``.ttf`` / ``.otf`` / ``.ttc`` files.
        system: also search the system's font folders.
        excluded: family-name prefixes never returned.
    """
    from matplotlib import font_manager

    paths = set(_bundled_font_paths())
    if system:
        paths.update(font_manager.findSystemFonts(fontext="ttf"))
    for folder in font_dirs:
        if not Path(folder).is_dir():
            from multiattn.io import UserError

            raise UserError(f"font_dirs: {folder} is not a folder")
        paths.update(font_manager.findSystemFonts(fontpaths=[str(folder)], fontext="ttf"))
    faces: dict[tuple[str, str], FontFace] = {}
    for path in sorted(paths):
        face = font_face(path)
        if face is None or is_excluded(face.family, excluded):
            continue
        faces.setdefault((face.family, face.style), face)
    return sorted(faces.values(), key=lambda f: (f.family, f.style))


def faces_fingerprint(faces: Sequence[FontFace]) -> str:
    """A short hash of the faces' names and file contents (the cache regenerates when it changes)."""
    digest = hashlib.sha256()
    for face in faces:
        digest.update(face.name.encode())
        digest.update(hashlib.sha256(Path(face.path).read_bytes()).digest())
    return digest.hexdigest()[:16]


def missing_packages(packages: Iterable[str] | None = None) -> list[str] | None:
    """Packages of :data:`FONT_PACKAGES` (or ``packages``) not installed; ``None`` without dpkg."""
    names = sorted(packages if packages is not None else (p for ps in FONT_PACKAGES.values() for p in ps))
    if shutil.which("dpkg-query") is None:
        return None
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed") and line.split()
    }
    return [name for name in names if name not in installed]


def install_fonts(*, held_out: bool = True) -> int:
    """``apt-get install`` :data:`FONT_PACKAGES` (and the held-out families' packages) where this
    process is root on a Debian-like system; otherwise say what to install. Returns an exit code."""
    packages = [p for ps in FONT_PACKAGES.values() for p in ps] + (
        list(HELD_OUT_PACKAGES) if held_out else []
    )
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(
            "fonts: not root on a system with apt-get; install these font packages (or any fonts) "
            f"yourself: {' '.join(packages)}",
            file=sys.stderr,
        )
        return 1
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=environment)
    missing = missing_packages(packages) or []
    if not missing:
        print(f"fonts: all {len(packages)} font packages are installed")
        return 0
    code = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=False, env=environment
    ).returncode
    if code != 0:  # one unavailable package must not block the rest
        for name in missing:
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", name], env=environment
            )
    still = missing_packages(packages) or []
    print(
        f"fonts: {len(packages) - len(still)} of {len(packages)} font packages installed"
        + (f"; not available here: {' '.join(still)}" if still else "")
    )
    return 0


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m multiattn.tasks.stn.sources.fonts", description="Fonts of the broad embedded digits."
    )
    parser.add_argument(
        "command", choices=("install", "list"), help="install the Debian packages, or list faces"
    )
    parser.add_argument("--font-dir", action="append", default=[], help="extra folder to search (list)")
    args = parser.parse_args(argv)
    if args.command == "install":
        return install_fonts()
    faces = discover_fonts(args.font_dir)
    for face in faces:
        print(f"{face.family}\t{face.style}\t{face.path}")
    print(f"{len(faces)} faces, {len({f.family for f in faces})} families", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main())

"""Masks, attention recording, atomic I/O, the data cache, and the import boundary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from multiattn.datacache import MANIFEST_NAME, cached_generate, manifest_is_valid
from multiattn.io import atomic_open, write_json
from multiattn.masks import build_attention_mask, causal_mask, check_lengths, lengths_to_mask
from multiattn.recording import AttentionMap, emit, is_recording, record_attention


def test_lengths_to_mask():
    mask = lengths_to_mask(torch.tensor([3, 1, 0]), 4)
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_causal_mask_with_cache_offset():
    # Two new queries after three cached steps see keys up to their own absolute position.
    mask = causal_mask(2, 5)
    assert torch.equal(mask, torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    assert torch.equal(causal_mask(3), torch.ones(3, 3, dtype=torch.bool).tril())


def test_build_attention_mask_combines_padding_and_causality():
    key_mask = torch.tensor([[True, True, False], [True, False, False]])
    mask = build_attention_mask(3, 3, mask=key_mask, is_causal=True)
    assert mask.shape == (2, 1, 3, 3)
    assert torch.equal(mask[0, 0], torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool))
    assert build_attention_mask(3, 3) is None


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.ones(2, 4, dtype=torch.bool), r"expected shape \(2, 3\)"),
        (torch.ones(2, 3), "dtype torch.bool"),
        (torch.ones(2, 5, 3, dtype=torch.bool), r"expected shape \(2, 4, 3\), received \(2, 5, 3\)"),
        (torch.ones(2, 1, 4, 3, dtype=torch.bool), "received"),
    ],
)
def test_bad_masks_name_expected_and_received_shape(mask, match):
    with pytest.raises(ValueError, match=match):
        build_attention_mask(4, 3, mask=mask, batch=2)


def test_check_lengths():
    check_lengths(torch.tensor([1, 3]), 2, 3)
    with pytest.raises(ValueError, match="integer"):
        check_lengths(torch.tensor([1.0, 2.0]), 2, 3)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        check_lengths(torch.tensor([1, 4]), 2, 3)


class _Emitter(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_recording():
            emit(self, x.softmax(-1), axes=("batch", "key"), note="demo")
        return x


def test_recording_names_modules_and_keeps_call_order():
    model = nn.Sequential(_Emitter(), nn.Sequential(_Emitter()))
    x = torch.randn(2, 5)
    assert not is_recording()
    with record_attention(model) as rec:
        assert is_recording()
        model(x)
        model(x)
    assert not is_recording()
    assert rec.names() == ["0", "1.0"]
    assert len(rec["0"]) == 2 and rec["0"][0].axes == ("batch", "key")
    assert rec["1.0"][0].meta == {"note": "demo"}
    assert rec.stacked("0").shape == (2, 2, 5)


def test_nested_recorders_both_receive():
    m = _Emitter()
    with record_attention(m) as outer, record_attention(m) as inner:
        m(torch.randn(1, 3))
    assert len(outer[""]) == len(inner[""]) == 1


def test_attention_map_checks_axes():
    with pytest.raises(ValueError, match="axis names"):
        AttentionMap("x", torch.zeros(2, 3), ("batch",))


def test_atomic_open_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half")
        raise RuntimeError("boom")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_files_follow_the_umask(tmp_path):
    write_json(tmp_path / "a.json", [])
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_cached_generate_regenerates_when_corrupt(tmp_path):
    calls = []

    def generate(root):
        calls.append(1)
        (root / "a.bin").write_bytes(b"x" * 10)
        return {"count": 1}

    params = {"seed": 1}
    manifest = cached_generate(tmp_path / "c", params, generate)
    assert manifest["files"] == {"a.bin": 10} and manifest["count"] == 1
    cached_generate(tmp_path / "c", params, generate)
    assert len(calls) == 1  # cached
    (tmp_path / "c" / "a.bin").write_bytes(b"x" * 3)  # truncated
    assert not manifest_is_valid(tmp_path / "c", params)
    cached_generate(tmp_path / "c", params, generate)
    assert len(calls) == 2
    (tmp_path / "c" / MANIFEST_NAME).write_text("{not json")
    cached_generate(tmp_path / "c", params, generate)
    assert len(calls) == 3
    cached_generate(tmp_path / "c", {"seed": 2}, generate)  # other parameters
    assert len(calls) == 4


def test_import_multiattn_does_not_import_lightning():
    code = (
        "import sys, multiattn, multiattn.attention, multiattn.transformer, multiattn.decoding, "
        "multiattn.stn, multiattn.viz, multiattn.checkpoint, multiattn.apps, multiattn.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning') or m.startswith('multiattn.tasks')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

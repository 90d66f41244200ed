"""Benchmark results name the machine they ran on and no machine path."""

from __future__ import annotations

import json

import benchmarks.output as output

INTEL = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
"""
AMD = """model name\t: AMD EPYC 9B14
flags\t\t: fpu sse avx512f avx512_bf16
"""
OLD = """model name\t: Intel(R) Xeon(R) CPU E5-2690 v4
flags\t\t: fpu sse avx2
"""


def test_describe_cpu_names_the_model_and_the_bf16_units():
    assert (
        output.describe_cpu(INTEL, 2)
        == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, 2 CPUs, AVX-512 BF16, AMX"
    )
    assert output.describe_cpu(AMD, 2) == "AMD EPYC 9B14, 2 CPUs, AVX-512 BF16, no AMX"
    assert output.describe_cpu(OLD, 16) == "Intel(R) Xeon(R) CPU E5-2690 v4, 16 CPUs, no AMX"


def test_write_results_records_the_machine_in_both_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(output, "RESULTS", tmp_path)
    monkeypatch.setattr(output, "machine", lambda: "AMD EPYC 9B14, 2 CPUs, AVX-512 BF16, no AMX")
    output.write_results("x", {"value": 1}, "# X\n\n| a |\n")
    record = json.loads((tmp_path / "x.json").read_text())
    assert record == {"value": 1, "machine": "AMD EPYC 9B14, 2 CPUs, AVX-512 BF16, no AMX"}
    assert (
        (tmp_path / "x.md")
        .read_text()
        .endswith("| a |\n\nMachine: AMD EPYC 9B14, 2 CPUs, AVX-512 BF16, no AMX.\n")
    )
    assert "Machine:" in capsys.readouterr().out


def test_machine_describes_this_processor():
    described = output.machine()
    assert "CPUs" in described and ("AMX" in described)

"""bench/profile_ops.py: oneDNN's verbose log read in both of its layouts, and one run end to end."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import profile_ops  # noqa: E402

# oneDNN >= 3.4 (torch 2.14) and oneDNN 3.1 (torch 2.1) lines, trimmed to the fields that matter
V1 = ("onednn_verbose,v1,primitive,exec,cpu,convolution,jit_dw:avx2,forward_inference,src:f32::blocked:aBcd8b::f0,"
      "attr-post-ops:eltwise_swish,alg:convolution_direct,g48mb1_ic48oc48_ih8oh8kh5sh1dh0ph2_iw8ow8kw5sw1dw0pw2,{ms}")
OLD = ("onednn_verbose,exec,cpu,convolution,ref:any,forward_inference,src_bf16::blocked:abcd:f0,,"
       "alg:convolution_direct,mb1_ic3oc24_ih640oh320kh3sh2dh0ph1_iw640ow320kw3sw2dw0pw1,{ms}")
HEADER = ("onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind,"
          "memory_descriptors,attributes,auxiliary,problem_desc,exec_time")


def test_parse_reads_both_layouts_and_averages_over_iterations():
    lines = [HEADER, V1.format(ms="0.5"), OLD.format(ms="3.0"), V1.format(ms="1.5"),
             "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit_dw:avx2,x,y,9.0", "some other output"]
    kernels = profile_ops.parse_onednn_verbose(lines, iters=2)
    assert kernels == {
        ("convolution", "jit_dw:avx2", "g48mb1_ic48oc48_ih8oh8kh5sh1dh0ph2_iw8ow8kw5sw1dw0pw2"): pytest.approx(1.0),
        ("convolution", "ref:any", "mb1_ic3oc24_ih640oh320kh3sh2dh0ph1_iw640ow320kw3sw2dw0pw1"): pytest.approx(1.5),
    }


def test_parse_counts_only_the_timed_iterations():
    lines = [V1.format(ms="100"), profile_ops.TIMED_MARK, V1.format(ms="2")]
    assert list(profile_ops.parse_onednn_verbose(lines).values()) == [pytest.approx(2.0)]


def test_kernel_table_marks_reference_kernels():
    kernels = profile_ops.parse_onednn_verbose([V1.format(ms="1"), OLD.format(ms="3")])
    table = "\n".join(profile_ops.kernel_table(kernels, top=5))
    summary = [line for line in table.splitlines() if line.startswith("  convolution ")]  # one row per kernel
    ref_row = next(line for line in summary if "ref:any" in line)
    jit_row = next(line for line in summary if "jit_dw:avx2" in line)
    assert "<- reference kernel" in ref_row and "75.0%" in ref_row
    assert "<- reference kernel" not in jit_row and "25.0%" in jit_row


@pytest.mark.subprocess
def test_profile_runs_end_to_end():
    command = [sys.executable, str(BENCH / "profile_ops.py"), "--size", "64", "--warmup", "0", "--iters", "1",
               "--precisions", "fp32", "--top", "3"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for section in ("1. latency by memory format", "2. top ops by self CPU time", "3. oneDNN kernels"):
        assert section in out
    assert "contiguous" in out and "channels_last" in out
    assert "all oneDNN primitives" in out or "oneDNN printed nothing" in out

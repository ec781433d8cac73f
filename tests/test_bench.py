"""bench/: profile_ops.py reads oneDNN's verbose log in both layouts and runs end to end;
compare_stacks.py pairs its rounds, tests their signs and runs two children."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import compare_stacks  # noqa: E402
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
    assert re.search(r"in two parts: network [\d.]+ ms, post-processing [\d.]+ ms \(NMS saw \d+ boxes\)", out)
    assert "all oneDNN primitives" in out or "oneDNN printed nothing" in out


def test_profile_of_the_training_step_shows_the_convolutions_backward():
    command = [sys.executable, str(BENCH / "profile_ops.py"), "--train", "--size", "64", "--warmup", "0",
               "--iters", "1", "--top", "40"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"training step, batch 8 at 64 px: median \d+ ms", done.stdout)
    assert "aten::convolution_backward" in done.stdout  # the backward pass ran and was recorded
    assert re.search(r"aten::convolution_backward .*\[\[8, \d+, \d+, \d+\]", done.stdout)  # by input shape, batch 8


# ---------------------------------------------------------------- bench/compare_stacks.py


def test_sign_test_matches_the_binomial_tails():
    assert compare_stacks.sign_test_p(0, 8) == pytest.approx(2 / 256)
    assert compare_stacks.sign_test_p(8, 8) == pytest.approx(2 / 256)  # symmetric
    assert compare_stacks.sign_test_p(2, 8) == pytest.approx(2 * (1 + 8 + 28) / 256)
    assert compare_stacks.sign_test_p(4, 8) == 1.0  # an even split is no evidence, capped at 1
    assert compare_stacks.sign_test_p(0, 0) == 1.0


def test_paired_summary_pairs_each_b_with_its_a():
    # B is 10 ms slower in every round although the machine drifts by far more than that between rounds
    a = [100.0, 200.0, 150.0, 300.0, 120.0, 250.0]
    b = [x + 10 for x in a]
    s = compare_stacks.paired_summary(a, b)
    assert s["diff"] == pytest.approx(10.0) and s["b_slower"] == 6 and s["b_faster"] == 0
    assert s["p"] == pytest.approx(2 / 64)
    assert s["b"] - s["a"] == pytest.approx(10.0)
    ties = compare_stacks.paired_summary([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])  # a tie counts for neither side
    assert (ties["b_slower"], ties["b_faster"], ties["p"]) == (1, 1, 1.0)
    with pytest.raises(ValueError, match="as many A as B"):
        compare_stacks.paired_summary([1.0], [1.0, 2.0])


def test_compare_stacks_refuses_without_the_baseline(capsys):
    with pytest.raises(SystemExit):
        compare_stacks.parse_args([])
    assert "--python-a is required" in capsys.readouterr().err


@pytest.mark.subprocess
def test_compare_stacks_runs_two_children_and_records_the_rounds(tmp_path):
    out = tmp_path / "rounds.jsonl"
    command = [sys.executable, str(BENCH / "compare_stacks.py"), "--python-a", sys.executable, "--sizes", "64",
               "--rounds", "2", "--warmup", "0", "--iters", "1", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round 2/2" in done.stdout and "sign test p" in done.stdout
    record = json.loads(out.read_text())
    assert record["precision"] == "fp32" and len(record["rounds"]) == 2
    for side in ("a", "b"):
        child = record["rounds"][0][side]
        assert child["torch"] and child["ms"]["64"] > 0
        assert child["mmcv_ops"].startswith(("torchvision", "compiled"))


# ---------------------------------------------------------------- scripts/bf16_check.sh

REPO = BENCH.parent


@pytest.mark.subprocess
def test_bf16_check_refuses_where_bf16_is_emulated(tmp_path):
    from balloondet.engine.precision import resolve_precision

    if resolve_precision("auto", "cpu")[0] == "bf16":
        pytest.skip("this CPU has native bf16: the check would run for real (about 40 min)")
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("the check sets up and uses .venv; these tests run from another venv")
    out, made_before = tmp_path / "logs", (REPO / ".bf16").exists()
    done = subprocess.run(["bash", str(REPO / "scripts" / "bf16_check.sh")], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(out)}, check=False)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "bf16 is emulated on this CPU" in done.stdout and "BF16_CHECK_DRY=1" in done.stdout
    assert not out.exists() and (REPO / ".bf16").exists() == made_before  # refused before it made anything


# ---------------------------------------------------------------- bench/train_loop.py and standin_checkpoint.py


@pytest.mark.subprocess
def test_train_loop_times_the_iteration_beside_the_step(tmp_path, synthetic_root):
    out = tmp_path / "loop.jsonl"
    command = [sys.executable, str(BENCH / "train_loop.py"), "--config", "rtmdet_tiny_smoke_synthetic", "--data-root",
               str(synthetic_root), "--epochs", "2", "--cache", "on", "off", "--workers", "0", "--threads", "2",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["cache"] for r in rows) == ["off", "on"]
    for row in rows:  # the second epoch's iterations (6 a epoch: 48 images, batch 8), the first one's end excluded
        assert row["iterations"] == 5 and row["step_s"] > 0
        assert row["iteration_s"] >= 0.8 * row["step_s"]  # an iteration holds its step
        assert row["iteration_per_step"] == pytest.approx(row["iteration_s"] / row["step_s"])
    assert "medians over the rounds" in done.stdout


def test_standin_checkpoint_has_the_coco_models_tensors(tmp_path, coco_head_state_dict):
    import standin_checkpoint
    import torch

    path = standin_checkpoint.make_standin(tmp_path / "standin.pth")
    state = torch.load(path, weights_only=True)["state_dict"]
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in coco_head_state_dict.items()}
    assert state["bbox_head.rtm_cls.0.weight"].shape[0] == 80

"""multiattn.tasks.common.distributed.gather_records across two real (gloo, CPU) processes."""

from __future__ import annotations

import json
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from multiattn.tasks.common.distributed import gather_records


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        records = [{"id": f"utt{rank}-{i}", "from": rank} for i in range(3)]
        if rank == 1:  # the sampler pads rank 1's shard with a repeat of rank 0's first item
            records.append({"id": "utt0-0", "from": 1})
        gathered = gather_records(records, key=lambda record: record["id"])
        (Path(out_dir) / f"{rank}.json").write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_every_rank_gets_all_records_once(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0] == ranks[1]
    assert [r["id"] for r in ranks[0]] == [f"utt{rank}-{i}" for rank in range(2) for i in range(3)]
    assert next(r for r in ranks[0] if r["id"] == "utt0-0")["from"] == 0  # the repeat was dropped


def test_one_process_keeps_its_records_as_they_are():
    records = [{"id": "a"}, {"id": "a"}]  # no process group: nothing gathered, nothing dropped
    assert gather_records(records, key=lambda record: record["id"]) is records

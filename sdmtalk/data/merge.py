"""Join caches prepared in parts (``sdmtalk prepare --shard I/N`` on N machines) into one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sdmtalk.data.cache import SHARD_DIR, committed_shards, file_sha1, finalize, read_manifest
from sdmtalk.errors import InputError


def merge_caches(out_dir, inputs) -> dict:
    """Copy (hard-link where possible) the committed shards of ``inputs`` into ``out_dir``
    and write one index over all of them. ``out_dir`` may be one of the inputs.

    All inputs must come from the same settings (same settings key); a clip id in two
    inputs is an error. Returns the merged manifest.
    """
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputError("merge needs at least one prepared cache folder")
    manifests = [read_manifest(p) for p in inputs]
    keys = {m["settings_key"] for m in manifests}
    if len(keys) != 1:
        raise InputError(f"caches {', '.join(map(str, inputs))} were prepared with different settings; "
                         "prepare every part with the same command (only --shard differs)")
    code = {k for m in manifests for k in m.get("code_keys", [])}
    if len(code) > 1:
        raise InputError("the parts were prepared by different sdmtalk code; rerun the older parts "
                         "with the same command to bring them up to date, then merge")
    (out_dir / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    parts: dict[str, int] = {}
    for src, manifest in zip(inputs, manifests, strict=True):
        for name, info in manifest["parts"].items():
            parts[name] = info["chunks"]
        if src.resolve() != out_dir.resolve():
            _copy_shards(src, out_dir)
    return finalize(out_dir, manifests[0]["settings"], keys.pop(), parts,
                    extra={"layout": manifests[0].get("layout"), "merged_from": [str(p) for p in inputs]})


def _copy_shards(src: Path, out_dir: Path) -> None:
    for commit in committed_shards(src):
        for name in (commit["file"], f"{commit['shard']}.json"):
            source, target = src / SHARD_DIR / name, out_dir / SHARD_DIR / name
            if target.exists():
                if file_sha1(target) != file_sha1(source):
                    raise InputError(f"{target} exists with other content: merge into an empty folder")
                continue
            _link_or_copy(source, target)
        if file_sha1(out_dir / SHARD_DIR / commit["file"]) != commit["file_sha1"]:
            raise InputError(f"{src / SHARD_DIR / commit['file']} is damaged: prepare that part again")


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard link (no extra disk) on the same file system, a copy across file systems."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # EXDEV and friends: a copy gives the same bytes
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)

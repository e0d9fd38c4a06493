"""Lip-sync expert in landmark space: network (expert), training (train), per-clip scores (score)."""

from sdmtalk.sync.expert import SyncExpert, SyncExpertConfig, load_expert
from sdmtalk.sync.score import av_offset, sync_confidence, sync_scores

__all__ = ["SyncExpert", "SyncExpertConfig", "av_offset", "load_expert", "sync_confidence", "sync_scores"]

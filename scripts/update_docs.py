"""Regenerate the measured-number tables of docs/ from the JSON the demo, training and benchmarks write.

Every measured table in the docs sits between two markers::

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

and is written by the renderer NAME below from one source in ``docs/results/``
(the JSON files are committed, so the docs are reproducible from the
repository). Nothing between the markers is edited by hand.

Usage::

    odeflow demo --out odeflow-out
    python scripts/update_docs.py --demo odeflow-out/summary.json     # store it, rewrite the tables

    python scripts/bench_solvers.py > solvers.jsonl
    python scripts/update_docs.py --bench-solvers solvers.jsonl --files docs/solvers.md

    python scripts/bench_gradients.py --threads one --sections peers,scaling > g1.jsonl
    python scripts/bench_gradients.py --threads default --sections peers,threads > g2.jsonl
    python scripts/update_docs.py --bench-gradients g1.jsonl g2.jsonl --files docs/adjoint.md
    (several runs of one kind: the tables give their range)

    odeflow train cnf --out odeflow-out/cnf        # and latent-ode, one results.json per seed
    python scripts/update_docs.py --train-cnf odeflow-out/cnf/results.json \\
        --train-latent-ode seed0/results.json seed1/results.json

    python scripts/study_odenet_gradients.py > g.jsonl
    python scripts/update_docs.py --study-odenet-gradients g.jsonl --files docs/odenet.md

    python scripts/bench_batch.py > batch.jsonl
    python scripts/update_docs.py --bench-batch batch.jsonl --files docs/batching.md

    python scripts/study_regularisation.py cnf --seeds 0 1 --out r.jsonl   # and odenet, same file
    python scripts/update_docs.py --study-regularisation r.jsonl --files docs/regularisation.md

    python scripts/update_docs.py                  # rewrite every table from docs/results/
    python scripts/update_docs.py --check          # exit 1 if a table differs from its source

A table whose source file is missing is left as it is and reported.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
# a block may be indented (a table inside a list item): its lines keep the markers' indentation
BLOCK = re.compile(r"^(?P<indent>[ \t]*)(?P<open><!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                   r"^(?P=indent)(?P<close><!-- end generated -->)", re.S | re.M)
NAMES = {"odenet": "ODE-Net", "rknet": "RK-Net", "resnet": "ResNet"}

# source name -> file in docs/results (a list of files for multi-run sources)
SOURCES = {"demo": "demo.json", "bench-solvers": "bench_solvers.jsonl",
           "bench-gradients": "bench_gradients-*.jsonl", "train-cnf": "train_cnf.json",
           "train-latent-ode": "train_latent_ode-*.json", "study-regularisation": "study_regularisation.jsonl",
           "bench-batch": "bench_batch.jsonl", "bench-memory-odenet": "bench_memory_odenet.jsonl",
           "bench-events": "bench_events.jsonl", "bench-autodiff": "bench_autodiff.jsonl",
           "bench-odenet": "bench_odenet.jsonl", "study-odenet-gradients": "study_odenet_gradients.jsonl",
           "bench-latent-step": "bench_latent_step.jsonl", "bench-ensemble": "bench_ensemble.jsonl"}


# -- reading ------------------------------------------------------------------------------------

def _json_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip().startswith("{")]


def load_source(name):
    """The data of source `name` from docs/results, or None if it is missing."""
    pattern = SOURCES[name]
    files = sorted(RESULTS.glob(pattern))
    if not files:
        return None
    if name.startswith(("bench-", "study-")):
        runs = [_json_lines(f) for f in files]
        return runs if "*" in pattern else runs[0]
    data = [json.loads(f.read_text()) for f in files]
    return data if "*" in pattern else data[0]


def store(name, paths):
    """Copy the given result files into docs/results under the source's name."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    pattern = SOURCES[name]
    if "*" in pattern:
        for old in RESULTS.glob(pattern):
            old.unlink()
        for i, path in enumerate(paths, start=1):
            shutil.copyfile(path, RESULTS / pattern.replace("*", str(i)))
    else:
        if len(paths) != 1:
            raise SystemExit(f"--{name} takes one file")
        shutil.copyfile(paths[0], RESULTS / pattern)


# -- rendering ----------------------------------------------------------------------------------

def _table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _run_line(demo):
    run = demo.get("run", {})
    load = run.get("load_average_1_5_15_min")
    end = run.get("load_average_at_end")
    parts = [f"`odeflow demo` of {run.get('date_utc', '?')} UTC (odeflow {run.get('odeflow', '?')}, "
             f"Python {run.get('python', '?')}, {run.get('cpus', '?')} CPUs"]
    if load:
        parts.append(f", load average {load[0]:.1f} at the start")
    if end:
        parts.append(f" and {end[0]:.1f} at the end")
    return "".join(parts) + f"; {demo.get('total_seconds', 0):.0f} s in all)"


def render_odenet_demo(demo):
    d = demo["odenet"]
    rows = []
    labels = {"odenet": "ODE-Net (adjoint)", "rknet": "RK-Net (backprop through dopri5)",
              "resnet": "ResNet (6 blocks)"}
    for r in d["rows"]:
        rows.append([labels[r["kind"]], f"{100 * r['test_error']:.2f} %", f"{r['params']:,}",
                     f"{r['memory_mb']:.1f} MB",
                     f"{r['nfe_forward']:.0f}" if r["kind"] != "resnet" else "-",
                     f"{r['nfe_backward']:.0f}" if r["kind"] == "odenet" else "-",
                     f"{r['seconds_per_epoch']:.1f}"])
    text = _table(["model", "test error", "parameters", "memory of one gradient step", "NFE forward",
                   "NFE backward", "s / epoch"], rows)
    by = {r["kind"]: r for r in d["rows"]}
    notes = [f"\nMeasured by {_run_line(demo)}: the ODE-Net part took {d['seconds']:.0f} s wall"]
    if "odenet" in by and "rknet" in by:
        ode, rk = by["odenet"], by["rknet"]
        notes.append(f"; RK-Net used {rk['memory_mb'] / ode['memory_mb']:.1f} times the ODE-Net's memory "
                     f"per step; the ODE-Net's backward solve took {ode['nfe_backward'] / ode['nfe_forward']:.2f} "
                     f"of its forward NFE (last epoch); test errors are "
                     + ", ".join(f"{round(by[k]['test_error'] * _n_test(d)):d} ({NAMES[k]})" for k in by)
                     + f" of {_n_test(d)} images")
    return text + "".join(notes) + ".\n"


def _n_test(d):
    return 80 if d.get("quick") else 359


def render_cnf_demo(demo):
    d = demo["cnf"]
    ml, tr = d["ml"], d["traces"]
    rows = [["maximum likelihood", f"{ml['iters']} iterations of {ml['batch']}, {ml['trace']} trace, "
             f"concatsquash {'-'.join(map(str, ml['sizes']))}"],
            ["test NLL", f"{ml['test_nll']:.4f} +- {ml['test_nll_se']:.4f} nats"]]
    if "kl_paired" in ml:
        rows.append(["KL(p &#124;&#124; q), paired on the test points",
                     f"{ml['kl_paired']:.4f} +- {ml['kl_paired_se']:.4f} nats"])
    rows.append(["learned T", f"{ml['end_time']:.3f}"])
    rows.append(["NFE forward / backward at the end", f"{ml['nfe_forward_last']:.0f} / {ml['nfe_backward_last']:.0f}"])
    for name, t in tr.items():
        rows.append([f"one step, {name} trace", f"NFE {t['nfe_forward']} / {t['nfe_backward']}, "
                     f"{t['vjp_per_eval']:.0f} VJP per evaluation, {1e3 * t['seconds']:.0f} ms"])
    for r in d["matching"]:
        label = f"NF K={r['k']}" if r["kind"] == "nf" else f"CNF M={r['k']}"
        rows.append([f"KL(q &#124;&#124; p) on {r['target']}, {label} ({r['iters']} iterations)",
                     f"{r['kl']:.3f} +- {r['kl_se']:.3f} nats"])
    sections = ", ".join(f"{k.replace('_', ' ')} {v['wall_s']:.0f} s" for k, v in d["sections"].items())
    return (_table(["quantity", "value"], rows)
            + f"\nMeasured by {_run_line(demo)}: the CNF part took {d['seconds']:.0f} s wall "
              f"({sections}) for {d['cpu_seconds']:.0f} s of CPU.\n")


def render_latent_ode_demo(demo):
    d = demo["latent_ode"]
    s, h = d["spirals"], d["hare_lynx"]
    rows = [[f"spirals, {s['n_obs']} observations, {s['iterations']} iterations",
             f"{s['test_rmse']:.4f}", f"{s['extrapolation_rmse_50']:.3f} ({s['extrapolation_n_spirals']} spirals)",
             f"{s['train_seconds']:.0f}"]]
    rmse = h["extrapolation_rmse"]
    rows.append([f"hare-lynx {h['test_years'][0]:.0f}-{h['test_years'][1]:.0f} (thousands of pelts)",
                 "-", ", ".join(f"{k} {v:.2f}" for k, v in rmse.items()), f"{h['train_seconds']:.0f}"])
    return (_table(["run", "predictive RMSE", "extrapolation RMSE", "training s"], rows)
            + f"\nMeasured by {_run_line(demo)}.\n")


def render_cnf_ml(train):
    ml = train["ml"]
    rows = [["test NLL", f"{ml['test_nll']:.4f} +- {ml['test_nll_se']:.4f} nats"]]
    if "entropy" in ml:
        rows += [["entropy `H(p)` (Monte Carlo, 200,000 samples, exact `log p`)", f"{ml['entropy']:.4f} nats"],
                 ["NLL - H", f"{ml['nll_minus_entropy']:.4f} nats"],
                 ["paired on the test points: `mean(log p(x) - log q(x))`, an estimate of KL from p to q",
                  f"**{ml['kl_paired']:.4f} +- {ml['kl_paired_se']:.4f} nats** (target <= 0.1)"]]
    rows += [["learned `T`", f"{ml['end_time']:.3f}"],
             ["NFE forward / backward per iteration at the end",
              f"{ml['nfe_forward_last']:.0f} / {ml['nfe_backward_last']:.0f}"],
             ["training time", f"{ml['seconds']:.0f} s of steps, {1e3 * ml['seconds_per_iter']:.0f} ms per "
              f"iteration (median)"]]
    return _table(["quantity", "value"], rows)


def render_cnf_traces(train):
    """The exact trace against Hutchinson's on one step of the trained model (``train cnf``)."""
    traces = train.get("ml", {}).get("traces")
    if traces is None:  # a results.json written before train cnf measured it
        return None
    rows = [[name, str(r["nfe_forward"]), str(r["nfe_backward"]), f"{r['vjp_per_eval']:.0f}",
             f"{r['seconds']:.2f} s"] for name, r in traces.items()]
    h = traces["hutchinson"]
    return (_table(["trace", "NFE forward", "NFE backward", "VJPs per evaluation", "step time"], rows)
            + f"\nHutchinson's batch-mean log-density minus the exact one over 8 probe draws: "
              f"{h['estimate_bias']:+.3f} +- {h['estimate_bias_se']:.3f} nats; one point's estimate has a "
              f"standard deviation of {h['point_std']:.2f} nats over draws.\n")


def render_cnf_matching(train):
    results = train.get("matching")
    if results is None:  # a run of --task ml only (or one stopped before the grid finished)
        return None
    targets = list(dict.fromkeys(r["target"] for r in results))
    ks = sorted({r["k"] for r in results})
    rows = []
    for kind in ("nf", "cnf"):
        for k in ks:
            cells = []
            for t in targets:
                r = next((r for r in results if r["target"] == t and r["kind"] == kind and r["k"] == k), None)
                cells.append(f"{r['kl']:.3f} +- {r['kl_se']:.3f}" if r else "")
            rows.append([f"NF K={k}" if kind == "nf" else f"CNF M={k}"] + cells)
    head = [""] + [t if t == "U1" else f"{t} (enveloped)" for t in targets]
    text = _table(head, rows)
    pairs, lower, exceptions = 0, 0, []
    for t in targets:
        for k in ks:
            nf = next((r for r in results if r["target"] == t and r["kind"] == "nf" and r["k"] == k), None)
            cnf = next((r for r in results if r["target"] == t and r["kind"] == "cnf" and r["k"] == k), None)
            if nf and cnf:
                pairs += 1
                if cnf["kl"] < nf["kl"]:
                    lower += 1
                else:
                    exceptions.append(f"`{t}` at `K = M = {k}` (NF {nf['kl']:.3f}, CNF {cnf['kl']:.3f})")
    text += f"\nThe CNF is lower in {lower} of the {pairs} pairs"
    text += (f"; not in {', '.join(exceptions)}.\n" if exceptions else ".\n")
    cells = {kind: [r for r in results if r["kind"] == kind] for kind in ("nf", "cnf")}
    if all(cells.values()):
        nfe = [r["nfe_forward"] for r in cells["cnf"] if r.get("nfe_forward") is not None]
        text += (f"Time per cell: NF {min(r['seconds'] for r in cells['nf']):.0f}-"
                 f"{max(r['seconds'] for r in cells['nf']):.0f} s, CNF "
                 f"{min(r['seconds'] for r in cells['cnf']):.0f}-{max(r['seconds'] for r in cells['cnf']):.0f} s"
                 + (f" (final NFE forward {min(nfe):.0f}-{max(nfe):.0f})" if nfe else "")
                 + f"; {sum(r['seconds'] for r in results) / 60:.0f} min of cell time in all.\n")
    return text


def render_latent_table2(runs):
    rows = []
    first = runs[0]
    paper = {int(k): v for k, v in first["paper_table2_latent_ode"].items()}
    for n_obs in sorted({r["n_obs"] for r in first["table2"]}):
        ode = next((r for r in first["table2"] if r["n_obs"] == n_obs and r["model"] == "latent_ode"), None)
        rnn = next((r for r in first["table2"] if r["n_obs"] == n_obs and r["model"] == "rnn"), None)

        def show(r, key, fmt):
            return format(r[key], fmt) if r else "-"
        rows.append([n_obs, show(ode, "test_rmse", ".4f"), show(rnn, "test_rmse", ".4f"),
                     f"{paper[n_obs]:.4f}" if n_obs in paper else "-",
                     f"{show(ode, 'extrapolation_rmse_50', '.3f')} / {show(rnn, 'extrapolation_rmse_50', '.3f')}",
                     f"{show(ode, 'train_seconds', '.0f')} / {show(rnn, 'train_seconds', '.0f')}"])
    text = _table(["observations per spiral", "latent ODE", "RNN baseline", "paper, latent ODE",
                   "extrapolation, 50 points (ODE / RNN)", "training s (ODE / RNN)"], rows)
    if "total_seconds" in first:
        text += f"\nThe whole command took {first['total_seconds']:.0f} s of wall time.\n"
    return text


def render_latent_hare_lynx(runs):
    runs = [r for r in runs if "hare_lynx" in r]
    h = runs[0]["hare_lynx"]
    species = list(h["extrapolation_rmse"])
    years = h["test_years"]
    rows = [["latent ODE (first run)"] + [f"{h['extrapolation_rmse'][s]:.2f}" for s in species]]
    if len(runs) > 1:
        rows.append([f"latent ODE, {len(runs)} runs: median (worst)"]
                    + [f"{statistics.median(r['hare_lynx']['extrapolation_rmse'][s] for r in runs):.1f} "
                       f"({max(r['hare_lynx']['extrapolation_rmse'][s] for r in runs):.1f})" for s in species])
    rows.append(["last observed value"] + [f"{h['naive_last_value_rmse'][s]:.2f}" for s in species])
    rows.append(["value ten years earlier"] + [f"{h['naive_one_cycle_ago_rmse'][s]:.2f}" for s in species])
    rows.append(["(fit years, first run)"] + [f"{h['fit_rmse'][s]:.2f}" for s in species])
    return _table([f"{years[0]:.0f}–{years[1]:.0f}, RMSE in thousands of pelts"] + species, rows)


def render_solvers_speed(rows):
    """docs/solvers.md §7 from one run of scripts/bench_solvers.py (JSON lines): the dopri5 rows."""
    rows = [r for r in rows if "problem" in r and "set" not in r]
    cells = {}
    for r in rows:
        cells.setdefault((r["problem"], r["rtol"]), {})[r["solver"]] = r
    out = []
    for (problem, rtol), s in cells.items():
        ip = s.get("odeflow dopri5 (njit in-place func, controller i)")
        pi, i = s.get("odeflow dopri5 (njit func)"), s.get("odeflow dopri5 (njit func, controller i)")
        py, rk = s.get("odeflow dopri5 (Python func)"), s.get("scipy RK45")
        yd = s.get("yardstick nb_dopri5 (njit in-place)")
        dx = next((v for k, v in s.items() if k.startswith("diffrax") and "Dopri5" in k), None)
        tq = next((v for k, v in s.items() if k.startswith("torchdiffeq")), None)

        def ms(r, digits=3, nfe=True):
            if r is None:
                return "-"
            return f"{1e3 * r['median_s']:.{digits}f}" + (f" ({r['nfe']})" if nfe and r.get("nfe") else "")

        def ratio(a, b):
            return f"{b['median_s'] / a['median_s']:.{0 if b['median_s'] / a['median_s'] >= 10 else 2}f}x" \
                if a and b else "-"
        out.append([problem, f"{rtol:.0e}", ms(ip), ms(i), ms(pi), ms(yd), ms(py, 2, False), ms(rk, 2), ms(dx),
                    ms(tq, 0, False), ratio(yd, ip), ratio(ip, rk), ratio(ip, dx), ratio(ip, i),
                    ratio(pi, rk), ratio(pi, dx), ratio(py, rk)])
    return _table(["problem", "rtol", "odeflow njit in place, i: ms (nfe)", "odeflow njit, i: ms (nfe)",
                   "odeflow njit, pi: ms (nfe)", "yardstick: ms (nfe)", "odeflow Python func: ms",
                   "scipy RK45: ms (nfe)", "diffrax Dopri5 jit: ms (nfe)", "torchdiffeq: ms",
                   "in place over yardstick", "in place vs RK45", "in place vs diffrax",
                   "out of place over in place", "njit pi vs RK45", "njit pi vs diffrax", "Python vs RK45"], out)


def render_solvers_fixed_costs(rows):
    """docs/solvers.md §7: the one-step solve (fixed cost per call) and the first solve in a fresh
    process (compile time), from the same run of scripts/bench_solvers.py."""
    out = []
    for r in rows:
        if r.get("set") == "overhead":
            out.append([f"one-step solve ({r['problem']})", r["solver"], f"{1e6 * r['median_s']:.1f} us"])
    for r in rows:
        if r.get("set") == "compile":
            what = "new @njit func" if r["func"] == "njit" else "Python func"
            out.append([f"first solve in a fresh process, {what} (run {r['attempt']})", "odeflow dopri5",
                        f"{r['first_solve_s']:.2f} s (compile_seconds {r['compile_seconds']:.2f} s)"])
    load = next((r["uptime_load_1_5_15"] for r in rows if "uptime_load_1_5_15" in r), None)
    note = f"\nLoad average (1, 5, 15 min) at the start of the run: {', '.join(f'{x:.2f}' for x in load)}.\n" \
        if load else ""
    return _table(["measurement", "solver", "median"], out) + note


def _span(values, scale=1e3, unit=" ms", digits=1):
    """``lo-hi`` of `values` (one value when the runs agree to the shown digits)."""
    lo, hi = min(values) * scale, max(values) * scale
    a, b = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
    return f"{a}{unit}" if a == b else f"{a}-{b}{unit}"


def _gradient_rows(runs, section, threads=None, **size):
    """Rows of one section of scripts/bench_gradients.py (every run), optionally at one thread
    setting and one problem size."""
    return [r for run in runs for r in run if r.get("section") == section
            and (threads is None or r.get("threads") == threads)
            and all(r.get(k) == v for k, v in size.items())]


def _load_line(runs, threads):
    """The runs' dates and load averages, for the line under a table."""
    parts = []
    for run in runs:
        head = [r for r in run if r.get("section") == "run" and "threads" in r]
        end = [r for r in run if r.get("section") == "run" and "load_average_at_end" in r]
        if head and head[0]["threads"] == threads:
            load = head[0]["load_average_1_5_15_min"][0]
            tail = f", {end[0]['load_average_at_end'][0]:.1f} at the end" if end else ""
            parts.append(f"{head[0]['date_utc']} UTC, load average {load:.1f} at the start{tail}")
    return "; ".join(parts)


_MODES = {"forward": "forward solve", "backprop": "backprop through the solver",
          "backsolve": "adjoint (backsolve)", "checkpoint": "adjoint (checkpoint)"}
_PEER_MODES = {"forward": ("odeint, no_grad", "diffeqsolve, jit"),
               "backprop": ("odeint", "RecursiveCheckpointAdjoint"),
               "backsolve": ("odeint_adjoint", "BacksolveAdjoint")}


def _counts(c):
    if not c:
        return ""
    if "nfe" in c:
        return f" (nfe {c['nfe']})"
    return f" ({c['n_steps']} steps)"


def render_gradients_speed(runs):
    """docs/adjoint.md's speed table (scripts/bench_gradients.py, ``peers`` at the base size, one
    thread per library): medians (ranges over the runs) and the ratios peer / odeflow."""
    rows = _gradient_rows(runs, "peers", "one", batch=256, width=64, state=2)
    out = []
    for mode, label in _MODES.items():
        got = [r for r in rows if r["mode"] == mode]
        if not got:
            continue
        row = [label, _span([r["odeflow_s"] for r in got]) + " / " + _span([r["odeflow_cpu_s"] for r in got])
               + _counts(got[0]["counts"].get("odeflow"))]
        for lib in ("torchdiffeq", "diffrax"):
            have = [r for r in got if f"{lib}_s" in r]
            if have:
                row += [_span([r[f"{lib}_s"] for r in have]) + " / " + _span([r[f"{lib}_cpu_s"] for r in have])
                        + _counts(have[0]["counts"].get(lib)),
                        "**" + _span([r[f"{lib}_over_odeflow"] for r in have], 1, "x", 2) + "** / "
                        + _span([r[f"{lib}_over_odeflow_cpu"] for r in have], 1, "x", 2)]
            else:
                row += ["—", "—"]
        out.append(row)
    peers = next((r["peers"] for r in rows if r.get("peers")), {})
    note = (f"\nEach cell: median wall time / median CPU time of the process (ratios likewise; on a "
            f"loaded machine the wall time includes waiting for a core). Run(s): {_load_line(runs, 'one')}. "
            f"Peers: " + "; ".join(peers.values()) + ".\n")
    return _table(["mode", "odeflow", "torchdiffeq", "torchdiffeq / odeflow", "diffrax",
                   "diffrax / odeflow"], out) + note


def render_gradients_scaling(runs):
    """docs/adjoint.md's scaling table: every problem size of the ``peers`` and ``scaling``
    sections at one thread, odeflow's median and the ratios peer / odeflow per mode."""
    rows = _gradient_rows(runs, "peers", "one")
    sizes = list(dict.fromkeys((r["batch"], r["width"], r["state"]) for r in rows))
    out = []
    for batch, width, state in sizes:
        for mode in ("forward", "backprop", "backsolve"):
            got = [r for r in rows if (r["batch"], r["width"], r["state"]) == (batch, width, state)
                   and r["mode"] == mode]
            if not got:
                continue
            cells = [f"{batch}", f"{width}", f"{state}", mode, _span([r["odeflow_s"] for r in got])]
            for lib in ("torchdiffeq", "diffrax"):
                have = [r for r in got if f"{lib}_over_odeflow" in r]
                cells.append(_span([r[f"{lib}_over_odeflow"] for r in have], 1, "x", 2) + " / "
                             + _span([r[f"{lib}_over_odeflow_cpu"] for r in have], 1, "x", 2) if have else "—")
            out.append(cells)
    return _table(["batch", "width", "state", "mode", "odeflow (wall)", "torchdiffeq / odeflow (wall / CPU)",
                   "diffrax / odeflow (wall / CPU)"], out)


def render_gradients_threads(runs):
    """docs/adjoint.md's BLAS-threads table: odeflow in the default environment (its own limit),
    under a one-thread limit, and with its limit off (``threads`` section), and the peers'
    ratios in the default environment (``peers`` with ``--threads default``)."""
    rows = _gradient_rows(runs, "threads")
    out = []
    for mode in ("forward", "backprop", "backsolve"):
        got = [r for r in rows if r["mode"] == mode]
        if got:
            out.append([_MODES[mode], _span([r["default_s"] for r in got]), _span([r["one_thread_s"] for r in got]),
                        "**" + _span([r["default_over_one_thread"] for r in got], 1, "x", 2) + "**",
                        _span([r["unlimited_s"] for r in got]),
                        _span([r["unlimited_over_one_thread"] for r in got], 1, "x", 1)])
    blas = next((r["blas"] for r in rows if r.get("blas")), [])
    note = (f"\nBLAS libraries (threads by default): {', '.join(f'{a} ({n})' for a, n in blas)}; "
            f"{_load_line(runs, 'default')}.\n")
    return _table(["mode", "default environment", "one BLAS thread", "default / one thread",
                   "odeflow's limit off", "limit off / one thread"], out) + note


def render_bench_batch(rows):
    """docs/batching.md from scripts/bench_batch.py: per problem, coupled against per-sample."""
    head = [r for r in rows if "load_average" in r]
    end = [r for r in rows if "load_average_end" in r]
    out = []
    for r in rows:
        if r.get("way") in ("coupled", "per_sample"):
            out.append([r["problem"], r["way"].replace("_", "-"), str(r["sample_evaluations"]), str(r["calls"]),
                        f"{1e3 * r['seconds']:.1f}", f"{r['us_per_sample_evaluation']:.2f}", f"{r['max_error']:.1e}"])
        elif r.get("way") == "summary":
            out.append([r["problem"], "**coupled / per-sample**",
                        f"**{r['evaluations_ratio_coupled_over_per_sample']:.2f}x**", "",
                        f"{r['wall_ratio_coupled_over_per_sample']:.2f}x",
                        f"per-sample / coupled: **{r['per_evaluation_cost_ratio_per_sample_over_coupled']:.2f}**", ""])
    text = _table(["problem", "way", "sample evaluations", "batched calls", "ms (median)",
                   "us per sample-evaluation", "max error"], out)
    if head and end:
        batch = next((r["batch"] for r in rows if "batch" in r), "?")
        text += (f"\nbatch {batch}, rtol 1e-6, atol 1e-8, one BLAS thread; 1-minute load average "
                 f"{head[0]['load_average'][0]:.1f} at the start and {end[0]['load_average_end'][0]:.1f} at "
                 f"the end on {head[0]['cpus']} CPUs (wall times inflated and noisy; counts and errors exact).\n")
    return text


def render_odenet_memory(rows):
    """docs/odenet.md §6 from scripts/bench_memory_odenet.py: peak MiB per solver-step count."""
    points = [r for r in rows if "solver_steps" in r]
    steps = sorted({r["solver_steps"] for r in points})
    label = {"odenet": "ODE-Net (adjoint), MiB", "rknet": "RK-Net (backprop), MiB"}
    out = []
    for model in dict.fromkeys(r["model"] for r in points):
        by_n = {r["solver_steps"]: r["peak_mib"] for r in points if r["model"] == model}
        out.append([label.get(model, model)] + [f"{by_n[n]:.2f}" if n in by_n else "" for n in steps])
    text = _table(["solver steps n"] + [str(n) for n in steps], out)
    fits = next((r["summary"] for r in rows if "summary" in r), None)
    if fits:
        text += ("\nFitted slopes: " + "; ".join(f"{label.get(k, k).split(',')[0]} {v['mib_per_step']:.3f} MiB per "
                                              f"step" for k, v in fits.items()) + ".\n")
    return text


def render_events_speed(rows):
    """docs/events.md from scripts/bench_events.py: speed-up against solve_ivp and event overheads."""
    out = []
    for r in rows:
        if r.get("summary"):
            out.append([r["problem"], f"{r['speedup_jit_event_vs_solve_ivp_event']:.0f}x",
                        f"{100 * r['event_overhead_jit']:+.0f} %", f"{100 * r['event_overhead_jit_samples_1']:+.0f} %",
                        f"{100 * r['event_overhead_python']:+.0f} %", f"{100 * r['event_overhead_scipy']:+.0f} %",
                        f"{r['load_1min']:.1f}"])
    errors = [r["max_event_time_error"] for r in rows if "max_event_time_error" in r and "odeflow" in r["contender"]]
    text = _table(["problem", "jitted + event vs solve_ivp + event", "event overhead: jitted (4 samples)",
                   "jitted (1 sample)", "Python func", "scipy", "load average"], out)
    if errors:
        first = next(r for r in rows if "rtol" in r)
        text += (f"\nWorst event-time error of odeflow's rows against the reference: {max(errors):.1e} "
                 f"(rtol {first['rtol']:g}; numba {first['numba']}, Python {first['python']}, "
                 f"{first['repeats']} interleaved turns).\n")
    return text


def render_autodiff_speed(rows):
    """docs/autodiff.md from scripts/bench_autodiff.py: an MLP's gradient against the NumPy floor."""
    out = [[r["name"], f"{r['median_us']:.0f} us", f"{r['ratio_to_numpy_floor']:.2f}x"]
           for r in rows if "median_us" in r]
    skipped = [r["name"] for r in rows if "skipped" in r]
    text = _table(["path", "median", "ratio to the NumPy floor"], out)
    summary = next((r for r in rows if r.get("name") == "summary"), None)
    if summary:
        env = ", ".join(f"{k}={v}" for k, v in summary.get("environment", {}).items()) or "none set"
        text += (f"\nPython {summary['python']}, NumPy {summary['numpy']}; environment: {env}"
                 + (f"; not run: {', '.join(skipped)}" if skipped else "") + ".\n")
    return text


def render_odenet_gradients(rows):
    """docs/odenet.md §2 from scripts/study_odenet_gradients.py: directional derivatives per tolerance."""
    ref = next(r for r in rows if "reference" in r)
    tols = sorted({r["rtol"] for r in rows if "mode" in r}, reverse=True)
    cell = {(r["mode"], r["rtol"]): r for r in rows if "mode" in r}
    out = []
    for tol in tols:
        out.append([f"{tol:g}"] + [f"{cell[(m, tol)]['directional_derivative']:.5f} ({100 * cell[(m, tol)]['relative_error']:.3f} % off)"
                                   if (m, tol) in cell else "" for m in ("backprop", "adjoint")])
    return (_table(["rtol = atol", "backprop through dopri5", "adjoint (backsolve)"], out)
            + f"\nReference, central differences of dopri5 solves at rtol = atol = {ref['rtol']:g} "
              f"(step {ref['step']:g}): {ref['directional_derivative']:.5f}.\n")


def render_latent_step(rows):
    """docs/latent_ode.md §5 from scripts/bench_latent_step.py: one training step per grid and gradient."""
    out = []
    for r in rows:
        if "grid" not in r:
            continue
        backward = (r["nfe_backward"] * r["batch"] if "nfe_backward" in r
                    else r.get("sample_evaluations_backward", "-"))
        out.append([str(r["n_obs"]), r["grid"].replace("_", "-"), r["gradient"], f"{r['seconds']:.3f}",
                    str(r["n_times"]), str(r["sample_evaluations_forward"]), str(backward)])
    loads = [r["load_average"][0] for r in rows if "load_average" in r]
    text = _table(["observations per spiral", "time grid", "gradient", "s per step (median)",
                   "output times per series' solve", "forward sample-evaluations",
                   "backward sample-evaluations"], out)
    if loads:
        text += (f"\nbatch of {rows[1]['batch']} spirals, one BLAS thread; 1-minute load average "
                 f"{min(loads):.1f}-{max(loads):.1f} from other jobs (wall times inflated; counts exact).\n")
    return text


def render_bench_ensemble(rows):
    """docs/batching.md §3 from scripts/bench_ensemble.py: serial vs threads vs peers vs Dask."""
    by = {r["name"]: r for r in rows if "name" in r}
    out = []
    if "serial_compiled" in by:
        r = by["serial_compiled"]
        out.append(["serial compiled loop (workers=1)", f"{r['seconds']:.3f}", "1.00x", f"{r['cpu_per_wall']:.2f}", ""])
    if "ensemble_threads" in by:
        r = by["ensemble_threads"]
        out.append([f"solve_ensemble, {r['workers']} threads", f"{r['seconds']:.3f}", f"**{r['speedup']:.2f}x**",
                    f"{r['cpu_per_wall']:.2f}", "identical to serial" if r.get("identical_to_serial") else "DIFFERS"])
    if "scipy_loop" in by:
        r = by["scipy_loop"]
        out.append([f"Python loop over solve_ivp (RK45; {r['timed_members']} timed, extrapolated)", f"{r['seconds']:.1f}",
                    f"threads {r['ratio_to_ensemble_threads']:.0f}x faster", "",
                    f"max difference {r['max_difference_to_odeflow']:.1e}"])
    if "diffrax_vmap" in by:
        r = by["diffrax_vmap"]
        if "skipped" in r:
            out.append(["diffrax vmap (jitted)", r["skipped"], "", "", ""])
        else:
            out.append(["diffrax vmap (jitted, compile excluded)", f"{r['seconds']:.3f}",
                        f"odeflow threads / diffrax time: {r['threads_over_diffrax']:.2f}", "",
                        f"max difference {r['max_difference_to_odeflow']:.1e}"])
    if "dask" in by:
        r = by["dask"]
        out.append([f"Dask LocalCluster, {r['workers']} worker processes", f"{r['seconds']:.3f}",
                    f"{r['ratio_to_threads']:.2f}x the threads' time", "",
                    ("identical to local" if r.get("identical_to_local") else "DIFFERS")
                    + f"; first call {r['first_call_seconds']:.0f} s (workers compile)"])
    text = _table(["way", "seconds (median)", "speed-up / ratio", "CPU per wall second", "notes"], out)
    start = next((r for r in rows if "load_average" in r), None)
    end = next((r for r in rows if "load_average_end" in r), None)
    members = by.get("serial_compiled", {}).get("members", "?")
    if start and end:
        text += (f"\n{members} members; 1-minute load average {start['load_average'][0]:.1f} at the start and "
                 f"{end['load_average_end'][0]:.1f} at the end on {start['cpus']} CPUs"
                 + (f"; GIL check {by['gil_check']['python_progress_during_runner_over_alone']:.2f}" if "gil_check" in by else "")
                 + ".\n")
    return text


def render_regularisation(rows):
    """docs/regularisation.md from scripts/study_regularisation.py (JSON lines): per model and
    arm, the seeds' mean end-of-training forward NFE, its ratio to the plain arm, the quality
    (test NLL or test errors) and the training wall time."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        runs = [r for r in rows if r["model"] == model]
        arms = {}
        for r in runs:
            key = (r["kinetic"], r["jacobian"], r.get("steer") or 0.0, bool(r.get("fixed_end_time")))
            arms.setdefault(key, []).append(r)
        plain = arms.get((0.0, 0.0, 0.0, False), [])
        plain_nfe = statistics.mean(r["nfe_forward_end"] for r in plain) if plain else None
        for (kin, jac, steer, fixed), group in arms.items():
            group = sorted(group, key=lambda r: r["seed"])
            nfe = statistics.mean(r["nfe_forward_end"] for r in group)
            if model == "cnf":
                quality = (", ".join(f"{r['test_nll']:.3f}" for r in group)
                           + f" nats (mean {statistics.mean(r['test_nll'] for r in group):.3f})")
            else:
                errors = statistics.mean(1 - r["test_acc"] for r in group)
                quality = (", ".join(str(r["test_errors"]) for r in group)
                           + f" of 359 (mean {100 * errors:.2f} %)")
            label = ", ".join([f"kinetic {kin:g}"] * bool(kin) + [f"Jacobian {jac:g}"] * bool(jac)
                              + [f"STEER {steer:g}"] * bool(steer) + ["T fixed"] * fixed) or "plain"
            out.append([{"cnf": "CNF 8gaussians", "odenet": "ODE-Net digits"}.get(model, model), label,
                        ", ".join(str(r["seed"]) for r in group), f"{nfe:.1f}",
                        f"{plain_nfe / nfe:.2f}x" if plain_nfe else "-", quality,
                        f"{statistics.mean(r['train_seconds'] for r in group):.0f}",
                        f"{min(r['load'] for r in group):.1f}-{max(r['load'] for r in group):.1f}"])
    return _table(["model", "penalties", "seeds", "forward NFE at the end (mean)", "plain / this",
                   "test NLL per seed" if all(r["model"] == "cnf" for r in rows) else "test NLL or errors per seed",
                   "training s (mean)", "load average"], out)


def render_odenet_speed(rows):
    """docs/odenet.md's training-speed table from one run of scripts/bench_odenet.py."""
    epochs = {(r["library"], r["batch_size"], r["epoch"]): r for r in rows if r.get("bench") == "odenet_epoch"}
    ratios = {(r["batch_size"], r["epoch"]): r["speedup"] for r in rows if r.get("bench") == "odenet_ratio"}
    load = next((r for r in rows if r.get("bench") == "odenet_load"), {})
    out = []
    for (library, batch, epoch), r in epochs.items():
        if library != "odeflow":
            continue
        peer = epochs.get(("torchdiffeq", batch, epoch))

        def cell(x):
            return "-" if x is None else (f"{x['seconds_median']:.1f} s (NFE {x['nfe_forward']:.1f} + "
                                          f"{x['nfe_backward']:.1f})")
        speedup = ratios.get((batch, epoch))
        out.append([batch, epoch, cell(r), cell(peer), "-" if speedup is None else f"**{speedup:.2f}x**",
                    r["repeats"]])
    table = _table(["batch", "epoch", "odeflow: median s (NFE forward + backward per step)",
                    "torchdiffeq: median s (NFE)", "speedup (torchdiffeq s / odeflow s)", "repeats"], out)
    if load:
        table += (f"\nOne thread each, interleaved in fresh processes; load average (1 min) "
                  f"{load['load_1min_before']:.1f} before and {load['load_1min_after']:.1f} after the run.\n")
    return table


# table name -> (source, renderer)
TABLES = {
    "odenet-demo": ("demo", render_odenet_demo),
    "cnf-demo": ("demo", render_cnf_demo),
    "latent-ode-demo": ("demo", render_latent_ode_demo),
    "cnf-ml": ("train-cnf", render_cnf_ml),
    "cnf-matching": ("train-cnf", render_cnf_matching),
    "cnf-traces": ("train-cnf", render_cnf_traces),
    "latent-ode-table2": ("train-latent-ode", render_latent_table2),
    "latent-ode-hare-lynx": ("train-latent-ode", render_latent_hare_lynx),
    "solvers-speed": ("bench-solvers", render_solvers_speed),
    "solvers-fixed-costs": ("bench-solvers", render_solvers_fixed_costs),
    "gradients-speed": ("bench-gradients", render_gradients_speed),
    "gradients-scaling": ("bench-gradients", render_gradients_scaling),
    "gradients-threads": ("bench-gradients", render_gradients_threads),
    "study-regularisation": ("study-regularisation", render_regularisation),
    "bench-batch": ("bench-batch", render_bench_batch),
    "odenet-memory": ("bench-memory-odenet", render_odenet_memory),
    "events-speed": ("bench-events", render_events_speed),
    "autodiff-speed": ("bench-autodiff", render_autodiff_speed),
    "odenet-speed": ("bench-odenet", render_odenet_speed),
    "odenet-gradients": ("study-odenet-gradients", render_odenet_gradients),
    "latent-step": ("bench-latent-step", render_latent_step),
    "bench-ensemble": ("bench-ensemble", render_bench_ensemble),
}


# -- rewriting ----------------------------------------------------------------------------------

def rewrite(text, sources, report):
    """`text` with every generated block re-rendered; `report` gets one line per block."""
    def replace(match):
        name = match.group("name")
        if name not in TABLES:
            report.append(f"  {name}: unknown table (kept)")
            return match.group(0)
        source, render = TABLES[name]
        data = sources.get(source)
        if data is None:
            report.append(f"  {name}: no docs/results/{SOURCES[source]} (kept as it is)")
            return match.group(0)
        indent = match.group("indent")
        rendered = render(data)
        if rendered is None:
            report.append(f"  {name}: docs/results/{SOURCES[source]} has no data for it (kept as it is)")
            return match.group(0)
        body = "".join(indent + line if line.strip() else line for line in rendered.splitlines(keepends=True))
        report.append(f"  {name}: {'unchanged' if body == match.group('body') else 'updated'}")
        return indent + match.group("open") + body + indent + match.group("close")
    return BLOCK.sub(replace, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in SOURCES:
        parser.add_argument(f"--{name}", nargs="+", metavar="FILE",
                            help=f"store FILE(s) as docs/results/{SOURCES[name]} first")
    parser.add_argument("--files", nargs="+", type=Path, help="only these markdown files (default: docs/*.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = parser.parse_args(argv)
    for name in SOURCES:
        paths = getattr(args, name.replace("-", "_"))
        if paths and not args.check:
            store(name, paths)
    sources = {name: load_source(name) for name in SOURCES}
    stale = False
    for path in args.files or sorted(DOCS.glob("*.md")):
        text = Path(path).read_text()
        report = []
        new = rewrite(text, sources, report)
        if not report:
            continue
        print(f"{path}:")
        print("\n".join(report))
        if new != text:
            stale = True
            if not args.check:
                Path(path).write_text(new)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())

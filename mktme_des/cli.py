"""The ``mktme-des`` command.

    mktme-des list [--json]                       models, experiments and scenarios that ship
    mktme-des simulate MODEL [-w key=value ...]   run a workload, print statistics
    mktme-des scenario run NAME [--json|--trace]  run a scenario, print its verdict
    mktme-des scenario explore NAME [--runs N]    the outcomes of its race under jittered timing
    mktme-des hunt POLICY [--budget-s S|--runs N] a corrupting schedule from the policy alone
    mktme-des run EXPERIMENT [--workers N]        run a parameter sweep; results/EXPERIMENT/
    mktme-des plot RESULTS_DIR                    redraw an experiment's figures
    mktme-des calibrate                           the model against published MKTME figures
    mktme-des bench [--json]                      the simulator's own speed on this machine
    mktme-des demo                                what `make demo` runs

A mistake in the input (a bad file, field or value) prints one line naming it and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from mktme_des.config.schema import check_depth
from mktme_des.errors import UserError
from mktme_des.limits import MAX_SEED


def _parse_set(items: list[str], what: str) -> dict:
    """``key=value`` pairs; values are TOML (numbers, true/false, "strings"), bare words
    are taken as strings. Dotted keys make nested tables."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"{what} {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        except RecursionError:
            raise UserError(f"{what} {item!r}: nested too deeply") from None
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"{what} {item!r}: {key!r} is not a dotted field name")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{what} {item!r}: {'.'.join(parts[:i + 1])} is already "
                                "given a value, so it cannot also have fields")
        if isinstance(node.get(parts[-1]), dict):
            raise UserError(f"{what} {item!r}: {key} already has fields given, so it cannot "
                            "also be given a value")
        node[parts[-1]] = value
    check_depth(out, what)
    return out


def cmd_list(args) -> int:
    from mktme_des import catalog
    from mktme_des.config.model import load_model
    from mktme_des.kernel.policy import load_policy
    from mktme_des.scenarios.spec import load_scenario

    def where(e) -> dict:
        return {"origin": e.origin, "path": str(e.path)}

    models = []
    for e in catalog.entries("model"):
        m = load_model(e.path)
        models.append({"name": e.name, "description": m.platform.description,
                       "packages": m.topology.packages,
                       "cores": m.topology.packages * m.topology.cores_per_package,
                       "keyids": m.mktme.max_keys if m.mktme.enabled else 0, **where(e)})
    policies = [{"name": e.name, "description": load_policy(e.path).description, **where(e)}
                for e in catalog.entries("policy")]
    experiments = [{"name": e.name, **where(e)} for e in catalog.entries("experiment")]
    scenarios = []
    for e in catalog.entries("scenario"):
        sc = load_scenario(e.path)
        scenarios.append({"name": e.name, "id": sc.info.name, "title": sc.info.title,
                          **where(e)})
    if args.json:
        print(json.dumps({"models": models, "policies": policies, "experiments": experiments,
                          "scenarios": scenarios}, indent=2))
        return 0
    origins = {r.origin: r for r in catalog.roots()}
    print("looked up in: " + "; ".join(
        f"{o} ({r.path})" for o, r in origins.items()) + "; a name is taken from the "
        "first that has it")

    def mark(item: dict) -> str:
        return "" if item["origin"] == "shipped" else f"  [{item['origin']}: {item['path']}]"

    print("models:")
    for m in models:
        print(f"  {m['name']:<14} {m['description']}{mark(m)}")
    print("kernel policies:")
    for pol in policies:
        print(f"  {pol['name']:<26} {pol['description']}{mark(pol)}")
    print("experiments:")
    for e in experiments:
        print(f"  {e['name']}{mark(e)}")
    if not experiments:
        print("  (none yet)")
    print("scenarios:")
    for s in scenarios:
        print(f"  {s['name']:<34} {s['id']}: {s['title']}{mark(s)}")
    return 0


def cmd_simulate(args) -> int:
    from mktme_des.config.model import load_model
    from mktme_des.config.schema import Context
    from mktme_des.simulate import simulate, summary_text, workload_file, workload_from
    from mktme_des.workloads.budget import check_budget, estimate_text

    data = workload_file(args.workload) if args.workload else {}
    data.update(_parse_set(args.set or [], "-w"))
    source = args.workload or "command line"
    spec = workload_from(data, source)
    model = load_model(args.model, _parse_set(args.model_set or [], "-m") or None)
    check_budget(model, spec, Context(source, "workload"))
    estimate = estimate_text(spec)
    if estimate:
        print(estimate, file=sys.stderr, flush=True)
    stats = simulate(model, spec, seed=args.seed,
                     progress=sys.stderr if sys.stderr.isatty() and not args.no_progress
                     else None, source=source)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        print(summary_text(stats))
    return 0


def cmd_scenario(args) -> int:
    from mktme_des.scenarios.report import chrome_trace, timeline_figure, verdict_text
    from mktme_des.scenarios.runner import run_scenario
    from mktme_des.scenarios.spec import list_scenarios

    if args.action == "list":
        for p in list_scenarios():
            print(p.stem)
        return 0
    if not args.name:
        raise UserError(f"scenario {args.action} needs a scenario name or file "
                        "(see `mktme-des scenario list`)")
    from mktme_des.scenarios.spec import find_scenario

    path = find_scenario(args.name)
    if args.action == "explore" and args.race_window:
        from mktme_des.scenarios.window import race_window

        if args.exhaustive or args.jitter_ns is not None or args.strategy != "uniform":
            raise UserError("--race-window moves one op at the file's own timing and order; "
                            "leave out --exhaustive, --jitter-ns and --strategy")
        window = race_window(path, *args.race_window, resolution_ns=args.resolution_ns,
                             span_ns=args.span_ns)
        print(json.dumps(window.to_dict(), indent=2) if args.json else window.text())
        return 0
    if args.action == "explore":
        from mktme_des.scenarios.explore import explore

        if args.exhaustive and args.jitter_ns is not None:
            raise UserError("--exhaustive runs the file's own timing; leave out --jitter-ns")
        if args.exhaustive and args.workers != 1:
            raise UserError("--exhaustive runs its schedules one after another (each follows "
                            "from the last); leave out --workers")
        if not args.exhaustive and (args.no_reduction or args.compare):
            raise UserError("--no-reduction and --compare go with --exhaustive")
        if args.no_reduction and args.compare:
            raise UserError("--compare runs both with and without reduction; leave out "
                            "--no-reduction")
        found = explore(path, runs=args.runs, seed=args.seed, save=args.save,
                        jitter_ns=500.0 if args.jitter_ns is None else args.jitter_ns,
                        workers=args.workers, exhaustive=args.exhaustive,
                        reduce=not args.no_reduction, compare=args.compare,
                        strategy=args.strategy, depth=args.depth)
        print(json.dumps(found.to_dict(args.trace), indent=2) if args.json
              else found.text(args.trace))
        return 0 if found.ok else 1
    from mktme_des.outputs import check_output
    from mktme_des.scenarios.report import FIGURE_FORMATS

    if args.plot:  # checked before the run, not after it
        check_output(args.plot, "--plot", FIGURE_FORMATS)
    if args.chrome_trace:
        check_output(args.chrome_trace, "--chrome-trace")
    res = run_scenario(path)
    if args.plot:
        timeline_figure(res, args.plot)
    if args.chrome_trace:
        chrome_trace(res, args.chrome_trace)
    if args.json:
        out = res.to_dict()
        if not args.trace:
            out.pop("trace")
        print(json.dumps(out, indent=2))
    else:
        print(verdict_text(res, trace=args.trace))
        if args.plot:
            print(f"  timeline: {args.plot}")
        if args.chrome_trace:
            print(f"  trace events: {args.chrome_trace}")
    return 0 if res.ok else 1


def cmd_hunt(args) -> int:
    from mktme_des.hunt import hunt

    found = hunt(args.policy, model=args.model, runs=args.runs, budget_s=args.budget_s,
                 seed=args.seed, workers=args.workers, save=args.save, against=args.against,
                 every_cause=args.all, strategy=args.strategy, depth=args.depth)
    print(json.dumps(found.to_dict(), indent=2) if args.json else found.text())
    return 1 if found.found else 0


def _bench_rounds(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 50:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rounds from 1 to 50")
    return n


def cmd_bench(args) -> int:
    from mktme_des.bench import bench, bench_text

    result = bench(quick=args.quick, rounds=args.rounds)
    print(json.dumps(result, indent=2) if args.json else bench_text(result))
    return 0


def cmd_run(args) -> int:
    from mktme_des.experiments.runner import run_experiment

    try:
        summary = run_experiment(args.experiment, workers=args.workers,
                                 scheduler=args.scheduler, out=args.out, force=args.force)
    except KeyboardInterrupt:  # outside the runs (validating, drawing): nothing half-written
        print("mktme-des: interrupted; finished runs are kept, run again to continue",
              file=sys.stderr)
        return 130
    print(summary.text())
    return summary.exit_code


def cmd_plot(args) -> int:
    from mktme_des.experiments.plots import plot_results

    for path in plot_results(args.results):
        print(path)
    return 0


def cmd_calibrate(args) -> int:
    """Run experiments/calibration.toml and print model against source, side by side."""
    import csv

    from mktme_des.experiments.runner import run_experiment

    summary = run_experiment("calibration", workers=args.workers, out=args.out)
    if summary.exit_code:
        print(summary.text())
        return summary.exit_code
    with open(summary.table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = {"a": "MKTME compiled in, no encrypted memory",
             "b": "all anonymous memory encrypted (page churn)",
             "c": "counterless AES-XTS, irregular workloads"}
    print(f"{'':2}{'figure':<46}{'model':>9}{'source':>9}{'miss':>9}")
    for r in rows:
        print(f"{r['figure']:<2}{names[r['figure']]:<46}{float(r['model_pct']):>8.1f}%"
              f"{float(r['source_pct']):>8.1f}%{float(r['difference_pct']):>+8.1f}pp")
    print()
    for r in rows:
        print(f"  {r['figure']}: {r['source']}")
    for r in rows:
        if r.get("fitted"):
            print(f"\n  {r['figure']} is fitted, not validated: {r['fitted']} was chosen to land "
                  "near the source.")
            print(f"     halved: {float(r['model_pct_at_half']):.1f}%   doubled: "
                  f"{float(r['model_pct_at_double']):.1f}%   with the 2019 allocation flush "
                  f"(always through KeyID 0): {float(r['model_pct_alloc_flush_keyid0']):.1f}%")
    print(f"\n  table: {summary.table}")
    return 0


def cmd_demo(args) -> int:
    from mktme_des.demo import demo

    return demo(Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mktme-des", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="models, experiments and scenarios that ship")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("simulate", help="run a workload on a model and print statistics")
    s.add_argument("model", help="model name (models/NAME.toml) or path")
    s.add_argument("--workload", help="TOML file with a [workload] table")
    s.add_argument("-w", dest="set", action="append", metavar="KEY=VALUE",
                   help="workload field, e.g. -w pattern=zipf -w cores=4 (repeatable)")
    s.add_argument("-m", dest="model_set", action="append", metavar="KEY=VALUE",
                   help="model override, e.g. -m mktme.aes_latency_ns=20 (repeatable)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true", help="full statistics as JSON")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown on a terminal for runs over 2 s)")
    s.set_defaults(fn=cmd_simulate)

    s = sub.add_parser("scenario", help="run, explore or list scenarios")
    s.add_argument("action", choices=("run", "explore", "list"))
    s.add_argument("name", nargs="?", help="scenario name (e.g. s2-stale-writeback-no-flush), id or path")
    s.add_argument("--json", action="store_true")
    s.add_argument("--trace", action="store_true", help="print the numbered event trace")
    s.add_argument("--plot", metavar="PNG", help="draw the timeline to this file")
    s.add_argument("--chrome-trace", metavar="JSON",
                   help="write the trace for chrome://tracing or Perfetto")
    s.add_argument("--runs", type=int, default=None,
                   help="explore: runs (default 100); with --exhaustive, the most schedules "
                   "(default 500)")
    s.add_argument("--exhaustive", action="store_true",
                   help="explore: run every order of same-time events at the file's timing, "
                   "one per class of orders equivalent up to swapping independent events")
    s.add_argument("--strategy", default="uniform",
                   help="explore: how random runs order same-time events: uniform (a shuffle, "
                   "the default) or pct (random actor priorities with depth-1 changes)")
    s.add_argument("--depth", type=int, default=3,
                   help="explore --strategy pct: the bug depth aimed at (default 3)")
    s.add_argument("--race-window", nargs=2, metavar=("OP_A", "OP_B"),
                   help="explore: the window of offsets at(OP_B) - at(OP_A) that end as the "
                   "file's own timing does; an op is named by its label, name or ACTOR:INDEX")
    s.add_argument("--resolution-ns", type=float, default=1.0,
                   help="explore --race-window: precision of each edge (default 1 ns)")
    s.add_argument("--span-ns", type=float, default=100000.0,
                   help="explore --race-window: how far from the file's offset to search "
                   "(default 100000 ns)")
    s.add_argument("--no-reduction", action="store_true",
                   help="explore --exhaustive: run every order, equivalent ones too")
    s.add_argument("--compare", action="store_true",
                   help="explore --exhaustive: also count the orders without reduction (up to "
                   "the same cap) and check both find the same outcomes")
    s.add_argument("--jitter-ns", type=float, default=None,
                   help="explore: largest move of an op's time, in ns (default 500; 0 only "
                   "shuffles same-time events)")
    s.add_argument("--seed", type=int, default=0, help="explore: seed of the random times")
    s.add_argument("--workers", type=int, default=1, help="explore: processes to share the runs")
    s.add_argument("--save", metavar="DIR",
                   help="explore: write the first run of each outcome there as a scenario file")
    s.set_defaults(fn=cmd_scenario)

    s = sub.add_parser("hunt", help="search a kernel policy for a corrupting schedule; exit 1 "
                       "when one is found")
    s.add_argument("policy", help="kernel policy (models/kernel/NAME.toml) or path")
    s.add_argument("--model", default="server-2s", help="machine model (default server-2s)")
    s.add_argument("--budget-s", type=float, default=None,
                   help="seconds of search (default 120)")
    s.add_argument("--runs", type=int, default=None, help="runs of search instead")
    s.add_argument("--seed", type=int, default=0, help="seed of the programs and schedules")
    s.add_argument("--workers", type=int, default=1, help="processes to share the runs")
    s.add_argument("--against", metavar="POLICY", help="count only what the same program and "
                   "schedule does not show under this policy (e.g. rfc-v2 for an unsafe "
                   "variant of it)")
    s.add_argument("--all", action="store_true", help="go on after the first find, to the end "
                   "of the budget, for counterexamples of other causes")
    s.add_argument("--save", metavar="DIR", help="write each shrunk counterexample there: a "
                   "scenario file, its trace and its timeline")
    s.add_argument("--strategy", default="uniform",
                   help="how a schedule orders same-time events: uniform (a random draw at "
                   "each tie, the default) or pct (random actor priorities with depth-1 "
                   "changes)")
    s.add_argument("--depth", type=int, default=3,
                   help="--strategy pct: the bug depth aimed at (default 3)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_hunt)

    s = sub.add_parser("bench", help="simulated accesses per second vs bare SimPy")
    s.add_argument("--json", action="store_true")
    s.add_argument("--quick", action="store_true", help="smaller runs (noisier)")
    s.add_argument("--rounds", type=_bench_rounds, default=None,
                   help="interleaved rounds, 1 to 50 (default 5; 2 with --quick)")
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("run", help="run an experiment's sweep; results in results/NAME/")
    s.add_argument("experiment", help="experiment name (experiments/NAME.toml) or path")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes (default: one per core; 0: in this process)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask distributed cluster, e.g. tcp://HOST:8786")
    s.add_argument("--out", metavar="DIR", help="results folder (default: results/NAME)")
    s.add_argument("--force", action="store_true", help="recompute every run")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("plot", help="redraw an experiment's figures from its results folder")
    s.add_argument("results", metavar="RESULTS_DIR", help="e.g. results/e1-aes-latency")
    s.set_defaults(fn=cmd_plot)

    s = sub.add_parser("calibrate", help="the model against published MKTME figures")
    s.add_argument("--workers", type=int, default=None)
    s.add_argument("--out", default=None, help="results folder (default results/calibration)")
    s.set_defaults(fn=cmd_calibrate)

    s = sub.add_parser("demo", help="run the demo and write its results")
    s.add_argument("--out", default="results/demo")
    s.set_defaults(fn=cmd_demo)
    return p


def _check_args(args: argparse.Namespace) -> None:
    """What argparse cannot check: no NUL byte in any value, a seed in range."""
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and "\0" in v for v in values):
            flag = {"set": "-w", "model_set": "-m"}.get(name, "--" + name.replace("_", "-"))
            if name in ("model", "name", "experiment", "results", "action"):
                flag = name.upper()
            raise UserError(f"{flag}: a NUL byte is not allowed in a name, path or value")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed}: must be 0..{MAX_SEED}")


def main(argv: list[str] | None = None) -> int:
    from mktme_des.signals import terminate_as_interrupt

    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():
            _check_args(args)
            return args.fn(args)
    except UserError as err:
        print(f"mktme-des: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every write is atomic, nothing half-written
        print("mktme-des: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover - `| head`
        return 0

"""``python engine_runner.py SCENARIO --out DIR``: ``twin run`` with the fixture city.

The builder's job runner in the tests: the real scenario schema, build and simulation with a
progress bar, only the city comes from the test fixture instead of ``twin.load_city``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main(argv):
    from fixture_run import engine_city

    from twin.build import build_twin
    from twin.scenario import ScenarioError, load_scenario
    from twin.simulation import Simulation

    scen, out = argv[0], argv[argv.index("--out") + 1]
    try:
        sc = load_scenario(scen)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sim = Simulation(build_twin(sc, city=engine_city()), stop_time=sc.duration, out_dir=out)
    sim.run(progress=True)
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

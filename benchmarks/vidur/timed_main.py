"""Run Vidur as `python -m vidur.main` does, with (CPU, wall) timers around each phase:
import, init (cluster, execution-time predictor, request generation), run, write_output.
A timing wrapper only; Vidur's code is not changed. Prints one `TIMING {json}` line."""
import atexit
import json
import resource
import time

t_start = (time.process_time(), time.perf_counter())
from vidur.config import SimulationConfig  # noqa: E402  (timed from process start)
from vidur.simulator import Simulator  # noqa: E402
from vidur.utils.random import set_seeds  # noqa: E402


def lap(t0):
    return time.process_time() - t0[0], time.perf_counter() - t0[1]


def now():
    return (time.process_time(), time.perf_counter())


def main():
    out = {}
    out["import"] = lap(t_start)
    t = now()
    config = SimulationConfig.create_from_cli_args()
    set_seeds(config.seed)
    simulator = Simulator(config)  # builds cluster + execution-time predictor, generates requests
    out["init"] = lap(t)
    atexit.unregister(simulator._write_output)
    t = now()
    simulator.run()
    out["run"] = lap(t)
    t = now()
    simulator._write_output()
    out["write_output"] = lap(t)
    out["total_in_process"] = lap(t_start)
    out["sim_end_time_s"] = simulator._time
    out["ru_maxrss_kb_self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["output_dir"] = config.metrics_config.output_dir
    print("TIMING " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

"""The fan-out graphs (1 -> 48 -> 1 = 50 steps), plain Dagster, shared by every executor."""

from __future__ import annotations

import dagster as dg

N_FAN = 48
#: Iterations of the "work" op's pure-Python loop: ~0.3 s of one core on the 2-core test
#: machine. Single-threaded on purpose, so in_process gets one core and a cluster of two
#: 1-thread workers two, as with real steps that compute.
WORK_ITERATIONS = 5_000_000


@dg.op
def start() -> int:
    return 2


@dg.op
def square(x: int) -> int:
    return x * x


@dg.op
def busy_square(x: int) -> int:
    total = 0
    for i in range(WORK_ITERATIONS):
        total += i & x
    return x * x + (total & 0)


@dg.op(ins={"values": dg.In(list)})
def gather(values: list) -> int:
    return sum(values)


def fan_graph(step: dg.OpDefinition, name: str) -> dg.GraphDefinition:
    """start -> 48 aliases of ``step`` -> gather."""

    @dg.graph(name=name)
    def fan():
        x = start()
        gather([step.alias(f"{step.name}_{i}")(x) for i in range(N_FAN)])

    return fan


TRIVIAL = fan_graph(square, "trivial_fan")
WORK = fan_graph(busy_square, "work_fan")


@dg.op
def only_op() -> int:
    return 1


@dg.graph
def one_op():
    only_op()

"""The pieces of the benchmarks (`make bench`): common (constants, messages), measure (/proc
readings), loadgen (child-process load generators), orchestra (processes, events, runs) and
report (printing). The benchmarks themselves are loadtest.bench, bench_booking and bench_nginx."""

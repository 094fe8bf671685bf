/* Helpers the benchmarks share (tests_bench.c, bench_blk.c). */
#ifndef BAREMETAL_BENCH_H
#define BAREMETAL_BENCH_H

#include <stdint.h>

/* Sorts ascending (for percentiles). */
void sort_u64(uint64_t* v, unsigned n);
uint64_t cycles_to_ns(uint64_t cycles);

#endif

/* The guest's tests: each returns true when it passed (or skipped), false
 * after fail() recorded why. */
#ifndef BAREMETAL_TESTS_H
#define BAREMETAL_TESTS_H

#include <stdbool.h>
#include <stdint.h>

struct test {
    const char* name;
    bool (*run)(void);
    const char* description;
};

/* What the loader told us, for the boot test. */
struct boot_info {
    unsigned kind;        /* BOOT_LINUX or BOOT_PVH */
    uint64_t info_address; /* boot_params or hvm_start_info */
    uint64_t ram_top;     /* end of the RAM range that holds the image */
    unsigned memory_ranges;
};
extern struct boot_info boot_info;

extern const struct test platform_tests[];
extern const unsigned platform_test_count;
extern const struct test console_tests[];
extern const unsigned console_test_count;
extern const struct test rule_tests[];
extern const unsigned rule_test_count;
extern const struct test net_tests[];
extern const unsigned net_test_count;
extern const struct test net_user_tests[]; /* not part of test=all: they need --net user */
extern const unsigned net_user_test_count;
extern const struct test net_user_bench_tests[]; /* not part of test=all */
extern const unsigned net_user_bench_test_count;
extern const struct test bench_tests[];  /* not part of test=all */
extern const unsigned bench_test_count;
extern const struct test blk_tests[];
extern const unsigned blk_test_count;
extern const struct test blk_bench_tests[]; /* not part of test=all */
extern const unsigned blk_bench_test_count;
extern const struct test net_bench_tests[]; /* not part of test=all */
extern const unsigned net_bench_test_count;
extern const struct test rng_tests[];
extern const unsigned rng_test_count;
extern const struct test msix_tests[];
extern const unsigned msix_test_count;
extern const struct test p9_tests[];
extern const unsigned p9_test_count;
extern const struct test p9_bench_tests[]; /* not part of test=all */
extern const unsigned p9_bench_test_count;

/* A test may set this; it runs after the test, pass or fail (e.g. to
 * reset a device that still points at the test's memory). */
extern void (*test_cleanup)(void);

#endif

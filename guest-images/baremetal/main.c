/* guest_main: boot information, then the tests the command line selects.
 *
 * Command line (minikvm --cmdline, QEMU -append): words "key=value";
 *   test=NAME[,NAME...]  run these tests, in this order (default: all)
 *   test=list            print the test names and exit 0
 *   irq=level|edge       how to program PCI INTx lines in the IOAPIC
 *                        (default: level, edge where the host is PVM-like;
 *                        see host_quirks in cpu.h)
 * Unknown names are a failure. Every other word is ignored, so minikvm's
 * default "console=ttyS0" is harmless. */
#include "apic.h"
#include "clock.h"
#include "cpu.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

struct boot_info boot_info;

extern bool test_failed;
extern bool test_skipped;
extern char failure_reason[256];

/* Linux boot_params ("zero page") fields (Documentation/arch/x86/zero-page.rst). */
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0 /* 20-byte entries: addr u64, size u64, type u32 */

/* PVH struct hvm_start_info (Xen's public hvm/start_info.h). */
#define PVH_MAGIC 0x336ec578u
#define PVH_VERSION 4
#define PVH_CMDLINE_PADDR 24
#define PVH_MEMMAP_PADDR 40    /* version >= 1 */
#define PVH_MEMMAP_ENTRIES 48  /* 24-byte entries: addr u64, size u64, type u32, reserved u32 */

#define E820_RAM 1
#define IMAGE_BASE 0x100000u

static uint64_t read64(uint64_t address) { return *(const uint64_t*)address; }
static uint32_t read32(uint64_t address) { return *(const uint32_t*)address; }

/* The RAM range that holds the image, clipped to 4 GiB (our identity map). */
static void note_range(uint64_t start, uint64_t size, uint32_t type) {
    boot_info.memory_ranges++;
    if (type != E820_RAM) return;
    uint64_t end = start + size;
    if (start <= IMAGE_BASE && end > IMAGE_BASE) boot_info.ram_top = end > 0x100000000ull ? 0x100000000ull : end;
}

static void parse_boot_info(unsigned kind, uint64_t info) {
    boot_info.kind = kind;
    boot_info.info_address = info;
    const char* cmdline = 0;
    if (kind == BOOT_LINUX) {
        uint64_t ptr = read32(info + BP_CMD_LINE_PTR) | (uint64_t)read32(info + BP_EXT_CMD_LINE_PTR) << 32;
        cmdline = (const char*)(uintptr_t)ptr;
        unsigned entries = *(const uint8_t*)(info + BP_E820_ENTRIES);
        for (unsigned i = 0; i < entries && i < 128; ++i) {
            uint64_t e = info + BP_E820_TABLE + 20 * i;
            note_range(read64(e), read64(e + 8), read32(e + 16));
        }
    } else {
        if (read32(info) != PVH_MAGIC) panic("hvm_start_info magic 0x%x, not 0x%x", read32(info), PVH_MAGIC);
        cmdline = (const char*)(uintptr_t)read64(info + PVH_CMDLINE_PADDR);
        if (read32(info + PVH_VERSION) >= 1) {
            uint64_t map = read64(info + PVH_MEMMAP_PADDR);
            unsigned entries = read32(info + PVH_MEMMAP_ENTRIES);
            for (unsigned i = 0; map && i < entries && i < 128; ++i)
                note_range(read64(map + 24 * i), read64(map + 24 * i + 8), read32(map + 24 * i + 16));
        }
    }
    cmdline_set(cmdline);
    if (boot_info.ram_top == 0) boot_info.ram_top = 16u << 20; /* no map: assume the 16 MiB minikvm minimum */
}

struct test_list {
    const struct test* tests;
    unsigned count;
    bool in_all; /* benchmarks run only when named */
};

void (*test_cleanup)(void);

static const struct test_list* test_lists(unsigned* n) {
    static struct test_list lists[14];
    lists[0] = (struct test_list){platform_tests, platform_test_count, true};
    lists[1] = (struct test_list){console_tests, console_test_count, true};
    lists[2] = (struct test_list){rule_tests, rule_test_count, true};
    lists[3] = (struct test_list){bench_tests, bench_test_count, false};
    lists[4] = (struct test_list){blk_tests, blk_test_count, true};
    lists[5] = (struct test_list){blk_bench_tests, blk_bench_test_count, false};
    lists[6] = (struct test_list){net_tests, net_test_count, true};
    lists[7] = (struct test_list){net_bench_tests, net_bench_test_count, false};
    lists[8] = (struct test_list){rng_tests, rng_test_count, true};
    lists[9] = (struct test_list){msix_tests, msix_test_count, true};
    lists[10] = (struct test_list){net_user_tests, net_user_test_count, false};
    lists[11] = (struct test_list){p9_tests, p9_test_count, true};
    lists[12] = (struct test_list){p9_bench_tests, p9_bench_test_count, false};
    lists[13] = (struct test_list){net_user_bench_tests, net_user_bench_test_count, false};
    *n = ARRAY_SIZE(lists);
    return lists;
}

static const struct test* find_test(const char* name, size_t len) {
    unsigned n;
    const struct test_list* lists = test_lists(&n);
    for (unsigned l = 0; l < n; ++l)
        for (unsigned i = 0; i < lists[l].count; ++i)
            if (strlen(lists[l].tests[i].name) == len && strncmp(lists[l].tests[i].name, name, len) == 0)
                return &lists[l].tests[i];
    return 0;
}

static unsigned passed, failed, skipped;

static void run_test(const struct test* t) {
    current_test = t->name;
    test_failed = false;
    test_skipped = false;
    failure_reason[0] = '\0';
    const uintptr_t heap = alloc_mark();
    const bool ok = t->run();
    if (test_cleanup) test_cleanup();
    test_cleanup = 0;
    alloc_release(heap);
    irq_disable();
    if (!ok || test_failed) {
        failed++;
        print(REPORT_PREFIX "FAIL %s: %s\n", t->name, failure_reason[0] ? failure_reason : "failed");
    } else if (test_skipped) {
        skipped++;
        print(REPORT_PREFIX "SKIP %s: %s\n", t->name, failure_reason);
    } else {
        passed++;
        print(REPORT_PREFIX "PASS %s\n", t->name);
    }
    current_test = 0;
}

__attribute__((noreturn)) void guest_main(unsigned kind, uint64_t info);
void guest_main(unsigned kind, uint64_t info) {
    /* First: the IDT, so an exception from here on is reported, not a
     * triple fault. */
    idt_init();
    serial_init();
    parse_boot_info(kind, info);
    memory_init(boot_info.ram_top);
    probe_host_quirks();
    print(REPORT_PREFIX "BOOT via=%s cpl=%u iopl-ignored=%u level-irq=%s cmdline=\"%s\"\n",
          kind == BOOT_LINUX ? "minikvm" : "pvh", read_cs() & 3, host_quirks.iopl_ignored,
          host_quirks.level_irq_unusable ? "unusable" : "usable", cmdline_get());
    lapic_init();
    clock_init();
    /* scripts/bench holds every run's figures to the rate its clock check
     * verified against the host's clock. */
    print(REPORT_PREFIX "CLOCK tsc_hz=%lu source=%s\n", tsc_hz(), tsc_source());

    char selection[512];
    unsigned lists_count;
    const struct test_list* lists = test_lists(&lists_count);
    if (!cmdline_value("test", selection, sizeof selection) || strcmp(selection, "all") == 0) {
        for (unsigned l = 0; l < lists_count; ++l)
            if (lists[l].in_all)
                for (unsigned i = 0; i < lists[l].count; ++i) run_test(&lists[l].tests[i]);
    } else if (strcmp(selection, "list") == 0) {
        for (unsigned l = 0; l < lists_count; ++l)
            for (unsigned i = 0; i < lists[l].count; ++i)
                print(REPORT_PREFIX "TEST %s: %s\n", lists[l].tests[i].name, lists[l].tests[i].description);
        guest_exit(EXIT_PASSED);
    } else {
        const char* p = selection;
        while (*p) {
            const char* name = p;
            while (*p && *p != ',') ++p;
            const struct test* t = find_test(name, (size_t)(p - name));
            if (t) {
                run_test(t);
            } else if (p > name) {
                char unknown[64];
                size_t n = (size_t)(p - name) < sizeof unknown - 1 ? (size_t)(p - name) : sizeof unknown - 1;
                memcpy(unknown, name, n);
                unknown[n] = '\0';
                failed++;
                print(REPORT_PREFIX "FAIL %s: no such test\n", unknown);
            }
            if (*p == ',') ++p;
        }
    }
    print(REPORT_PREFIX "DONE passed=%u failed=%u skipped=%u\n", passed, failed, skipped);
    guest_exit(failed ? EXIT_FAILED : EXIT_PASSED);
}

/* A misbehaving driver: one test per rule of the split ring or the legacy
 * transport, broken on purpose against virtio-console. For a broken ring
 * rule the device must stop and say so -- DEVICE_NEEDS_RESET (0x40) in the
 * status register, and a configuration-change interrupt since DRIVER_OK was
 * set (virtio 1.2 2.1.2) -- serve nothing more until reset, leave the rest
 * of the machine running (the UART, PCI, the LAPIC timer, and a second
 * vCPU when the smp test started one), and work again after reset (status 0) and a
 * fresh initialization. Mistakes the legacy transport simply ignores
 * (notify of a queue never set up, writes to read-only registers, status
 * bits in an odd order) must leave the device working.
 *
 * These check minikvm's documented behaviour (virtio/virtio_pci_legacy.h,
 * virtio/virtqueue.h); they skip elsewhere. */
#include "apic.h"
#include "clock.h"
#include "console.h"
#include "cpu.h"
#include "pci.h"
#include "runtime.h"
#include "smp.h"
#include "tests.h"
#include "x86.h"

#define NEED_MINIKVM_CONSOLE()                                                                         \
    do {                                                                                               \
        if (boot_info.kind != BOOT_LINUX) return skip("checks minikvm's behaviour; not booted by minikvm"); \
        if (!console_find()) return skip("no virtio-console (run minikvm with --console virtio)");       \
    } while (0)

static char payload[64] = "MINIKVM-BAREMETAL-VIRTIO must never be printed\n";

/* Puts `head` in the transmit queue's available ring, publishes and kicks,
 * bypassing the ring driver's bookkeeping (the descriptors are raw). */
static void publish_raw(uint16_t head) {
    struct virtq* tx = &console_dev.tx;
    tx->avail_ring[tx->shadow_avail & (tx->size - 1)] = head;
    tx->shadow_avail++;
    virtq_kick_prepare(tx);
    vp_notify(&console_dev.dev, CONSOLE_TX);
}

static void raw_desc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    volatile struct virtq_desc* d = &console_dev.tx.desc[index];
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

/* The rest of the machine still works: the UART, PCI configuration space,
 * the LAPIC timer (interrupt delivery). */
static volatile unsigned timer_ticks;
static void on_timer(struct interrupt_frame* f) {
    (void)f;
    timer_ticks++;
    lapic_eoi();
}

static bool machine_still_runs(void) {
    /* The second vCPU, if the smp test started it, keeps counting. */
    if (smp_ap_running()) CHECK(smp_ap_progressing(500000), "the second vCPU stopped");
    CHECK(inb(COM1_PORT + 5) & 0x20, "UART transmitter not ready");
    CHECK(pci_read16((struct pci_address){0, 0, 0}, PCI_VENDOR_ID) == 0x8086, "host bridge not answering");
    timer_ticks = 0;
    set_interrupt_handler(VECTOR_LAPIC_TIMER, on_timer);
    irq_enable();
    lapic_timer_oneshot(VECTOR_LAPIC_TIMER, 1000);
    const bool ticked = console_wait_interrupts(&timer_ticks, 1, 200);
    lapic_timer_stop();
    set_interrupt_handler(VECTOR_LAPIC_TIMER, 0);
    CHECK(ticked, "LAPIC timer interrupt not delivered");
    return true;
}

/* After a broken ring rule: NEEDS_RESET, the config interrupt, nothing
 * served, the machine running, recovery by reset. */
static bool expect_needs_reset(const char* rule) {
    struct console* c = &console_dev;
    const uint64_t deadline = now_ns() + 500000000ull;
    while (!(vp_status(&c->dev) & VIRTIO_STATUS_NEEDS_RESET) && now_ns() < deadline) cpu_relax();
    const uint8_t status = vp_status(&c->dev);
    CHECK(status & VIRTIO_STATUS_NEEDS_RESET, "%s: status 0x%x, DEVICE_NEEDS_RESET not set", rule, status);
    CHECK((status & 0x0f) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK),
          "%s: status 0x%x lost the driver's bits", rule, status);
    CHECK(console_wait_interrupts(&c->config_interrupts, 1, 500), "%s: no configuration-change interrupt", rule);
    /* Nothing more is served: a valid request stays unused. */
    const uint16_t used_before = *c->tx.used_idx;
    struct virtq_buf b = {payload, 0};
    const uint16_t head = (uint16_t)(c->tx.size - 1); /* a descriptor the broken chain did not use */
    raw_desc(head, virtq_dma(&c->tx, b.addr), 0, 0, 0);
    publish_raw(head);
    delay_us(20000);
    CHECK(*c->tx.used_idx == used_before, "%s: a broken device still completed requests", rule);
    if (!machine_still_runs()) return false;
    /* Recovery: reset, then everything from scratch. */
    console_cleanup_irq();
    CHECK(vp_reset(&c->dev), "%s: status 0x%x after reset", rule, vp_status(&c->dev));
    if (!console_start(0xffffffffu)) return false;
    if (!console_send_filler()) return false;
    CHECK(vp_status(&c->dev) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK),
          "%s: status 0x%x after recovery", rule, vp_status(&c->dev));
    return true;
}

/* Starts the device with `features` and the config interrupt routed. */
static bool start(uint32_t features) {
    if (!console_start(features)) return false;
    console_enable_irq();
    return true;
}

static bool test_rule_desc_loop(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(0)) return false;
    const uint64_t p = virtq_dma(&console_dev.tx, payload);
    raw_desc(0, p, 1, VIRTQ_DESC_F_NEXT, 1); /* 0 -> 1 -> 0 -> ... (2.7.5.2) */
    raw_desc(1, p, 1, VIRTQ_DESC_F_NEXT, 0);
    publish_raw(0);
    return expect_needs_reset("descriptor loop");
}

static bool test_rule_next_out_of_range(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(0)) return false;
    raw_desc(0, virtq_dma(&console_dev.tx, payload), 1, VIRTQ_DESC_F_NEXT, console_dev.tx.size); /* 2.7.5 */
    publish_raw(0);
    return expect_needs_reset("next out of range");
}

static bool test_rule_head_out_of_range(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(0)) return false;
    publish_raw((uint16_t)(console_dev.tx.size + 5)); /* a head indexes the table */
    return expect_needs_reset("head out of range");
}

static bool test_rule_buffer_past_ram(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(0)) return false;
    /* The last 8 bytes of RAM and 8 beyond (2.7.5: a buffer is guest memory). */
    raw_desc(0, ram_top() - 8, 16, 0, 0);
    publish_raw(0);
    return expect_needs_reset("buffer past the end of RAM");
}

static bool test_rule_address_wrap(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(0)) return false;
    raw_desc(0, 0xfffffffffffffff0ull, 0x20, 0, 0); /* addr + len wraps 2^64 */
    publish_raw(0);
    return expect_needs_reset("buffer address wrapping 2^64");
}

static bool need_indirect(void) { return (console_dev.features >> VIRTIO_F_RING_INDIRECT_DESC) & 1; }

static bool test_rule_indirect_nested(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(1u << VIRTIO_F_RING_INDIRECT_DESC)) return false;
    if (!need_indirect()) return skip("INDIRECT_DESC not offered");
    struct virtq_desc* outer = alloc_zeroed(16, 16);
    struct virtq_desc* inner = alloc_zeroed(16, 16);
    inner[0] = (struct virtq_desc){virtq_dma(&console_dev.tx, payload), 1, 0, 0};
    outer[0] = (struct virtq_desc){virtq_dma(&console_dev.tx, inner), 16, VIRTQ_DESC_F_INDIRECT, 0}; /* 2.7.5.3.1 */
    raw_desc(0, virtq_dma(&console_dev.tx, outer), 16, VIRTQ_DESC_F_INDIRECT, 0);
    publish_raw(0);
    return expect_needs_reset("indirect table inside an indirect table");
}

static bool test_rule_indirect_with_next(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(1u << VIRTIO_F_RING_INDIRECT_DESC)) return false;
    if (!need_indirect()) return skip("INDIRECT_DESC not offered");
    struct virtq_desc* table = alloc_zeroed(16, 16);
    table[0] = (struct virtq_desc){virtq_dma(&console_dev.tx, payload), 1, 0, 0};
    raw_desc(0, virtq_dma(&console_dev.tx, table), 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1); /* 2.7.5.3.1 */
    raw_desc(1, virtq_dma(&console_dev.tx, payload), 1, 0, 0);
    publish_raw(0);
    return expect_needs_reset("INDIRECT together with NEXT");
}

static bool test_rule_indirect_length(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(1u << VIRTIO_F_RING_INDIRECT_DESC)) return false;
    if (!need_indirect()) return skip("INDIRECT_DESC not offered");
    struct virtq_desc* table = alloc_zeroed(32, 16);
    table[0] = (struct virtq_desc){virtq_dma(&console_dev.tx, payload), 1, 0, 0};
    raw_desc(0, virtq_dma(&console_dev.tx, table), 24, VIRTQ_DESC_F_INDIRECT, 0); /* not a multiple of 16 */
    publish_raw(0);
    return expect_needs_reset("indirect table length not a multiple of 16");
}

static bool test_rule_indirect_not_negotiated(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(0)) return false;
    struct virtq_desc* table = alloc_zeroed(16, 16);
    table[0] = (struct virtq_desc){virtq_dma(&console_dev.tx, payload), 1, 0, 0};
    raw_desc(0, virtq_dma(&console_dev.tx, table), 16, VIRTQ_DESC_F_INDIRECT, 0); /* feature not negotiated */
    publish_raw(0);
    return expect_needs_reset("INDIRECT without VIRTIO_F_RING_INDIRECT_DESC");
}

static bool test_rule_avail_jump(void) {
    NEED_MINIKVM_CONSOLE();
    if (!start(0)) return false;
    struct virtq* tx = &console_dev.tx;
    /* More entries available than the ring holds (2.7.6). */
    *tx->avail_idx = (uint16_t)(tx->shadow_avail + tx->size + 1);
    vp_notify(&console_dev.dev, CONSOLE_TX);
    return expect_needs_reset("available index more than a ring ahead");
}

static bool test_rule_pfn_outside_ram(void) {
    NEED_MINIKVM_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    vp_begin_init(d, 0);
    /* Placing a queue where there is no RAM breaks the device at once
     * (before DRIVER_OK, so no config interrupt is due). */
    vp_set_queue_pfn(d, CONSOLE_TX, (uint32_t)(ram_top() >> 12));
    const uint8_t status = vp_status(d);
    CHECK(status & VIRTIO_STATUS_NEEDS_RESET, "status 0x%x after a PFN outside RAM", status);
    /* DRIVER_OK does not activate a broken device. */
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    CHECK(vp_status(d) & VIRTIO_STATUS_NEEDS_RESET, "DRIVER_OK cleared DEVICE_NEEDS_RESET");
    if (!machine_still_runs()) return false;
    CHECK(vp_reset(d), "status 0x%x after reset", vp_status(d));
    if (!console_start(0) || !console_send_filler()) return false;
    return true;
}

/* ---- Mistakes the legacy transport ignores ------------------------------ */

static bool still_works(const char* what) {
    const uint8_t status = vp_status(&console_dev.dev);
    CHECK(!(status & VIRTIO_STATUS_NEEDS_RESET), "%s: status 0x%x", what, status);
    if (!console_send_filler()) return false;
    return machine_still_runs();
}

static bool test_rule_notify_unset_queue(void) {
    NEED_MINIKVM_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    vp_begin_init(d, 0);
    CHECK(vp_setup_queue(d, &console_dev.rx, CONSOLE_RX, 0), "queue 0 setup");
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    vp_notify(d, CONSOLE_TX); /* exists, never placed */
    vp_notify(d, 7);          /* does not exist */
    vp_notify(d, 0xffff);
    CHECK(!(vp_status(d) & VIRTIO_STATUS_NEEDS_RESET), "notify of an unset queue: status 0x%x", vp_status(d));
    vp_reset(d);
    if (!console_start(0)) return false;
    return still_works("notify of a queue never set up");
}

static bool test_rule_readonly_writes(void) {
    NEED_MINIKVM_CONSOLE();
    if (!console_start(0)) return false;
    const struct virtio_pci* d = &console_dev.dev;
    const uint32_t features = vp_device_features(d);
    vp_write32(d, VIRTIO_PCI_HOST_FEATURES, ~features);
    CHECK(vp_device_features(d) == features, "host features changed to 0x%x", vp_device_features(d));
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, CONSOLE_TX);
    const uint16_t size = vp_read16(d, VIRTIO_PCI_QUEUE_NUM);
    vp_write16(d, VIRTIO_PCI_QUEUE_NUM, (uint16_t)(size / 2));
    CHECK(vp_read16(d, VIRTIO_PCI_QUEUE_NUM) == size, "queue size changed to %u", vp_read16(d, VIRTIO_PCI_QUEUE_NUM));
    vp_write8(d, VIRTIO_PCI_ISR, 0xff);
    CHECK(vp_isr(d) == 0, "ISR took a write");
    /* Configuration bytes other than emerg_wr are read-only too. */
    const uint32_t ports = vp_read32(d, VIRTIO_PCI_CONFIG + 4);
    vp_write32(d, VIRTIO_PCI_CONFIG + 4, ports + 5);
    CHECK(vp_read32(d, VIRTIO_PCI_CONFIG + 4) == ports, "max_nr_ports changed to %u", vp_read32(d, VIRTIO_PCI_CONFIG + 4));
    return still_works("writes to read-only registers");
}

static bool test_rule_status_order(void) {
    NEED_MINIKVM_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    vp_reset(d);
    /* The driver cannot set DEVICE_NEEDS_RESET: that bit is the device's. */
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_NEEDS_RESET);
    CHECK(vp_status(d) == VIRTIO_STATUS_ACKNOWLEDGE, "status 0x%x after the driver wrote NEEDS_RESET", vp_status(d));
    /* DRIVER_OK before ACKNOWLEDGE and DRIVER, queues placed first: a
     * legacy device accepts it (old Linux drivers did this) and works. */
    vp_reset(d);
    CHECK(vp_setup_queue(d, &console_dev.rx, CONSOLE_RX, 0) && vp_setup_queue(d, &console_dev.tx, CONSOLE_TX, 0),
          "queue setup without ACKNOWLEDGE");
    vp_set_status(d, VIRTIO_STATUS_DRIVER_OK);
    CHECK(vp_status(d) == VIRTIO_STATUS_DRIVER_OK, "status 0x%x after DRIVER_OK alone", vp_status(d));
    if (!still_works("DRIVER_OK without ACKNOWLEDGE|DRIVER")) return false;
    /* ACKNOWLEDGE after DRIVER_OK, and clearing DRIVER_OK without a reset:
     * stored, the device stays active (only status 0 resets). */
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    CHECK(vp_status(d) == VIRTIO_STATUS_ACKNOWLEDGE, "status 0x%x", vp_status(d));
    return still_works("DRIVER_OK cleared without reset");
}

const struct test rule_tests[] = {
    {"rule-desc-loop", test_rule_desc_loop, "a descriptor chain that loops: DEVICE_NEEDS_RESET, recovery by reset"},
    {"rule-next-range", test_rule_next_out_of_range, "next past the descriptor table: DEVICE_NEEDS_RESET"},
    {"rule-head-range", test_rule_head_out_of_range, "an available head past the table: DEVICE_NEEDS_RESET"},
    {"rule-buffer-past-ram", test_rule_buffer_past_ram, "a buffer running past the end of RAM: DEVICE_NEEDS_RESET"},
    {"rule-address-wrap", test_rule_address_wrap, "a buffer whose address + length wraps 2^64: DEVICE_NEEDS_RESET"},
    {"rule-indirect-nested", test_rule_indirect_nested, "INDIRECT inside an indirect table: DEVICE_NEEDS_RESET"},
    {"rule-indirect-next", test_rule_indirect_with_next, "INDIRECT together with NEXT: DEVICE_NEEDS_RESET"},
    {"rule-indirect-length", test_rule_indirect_length, "indirect table length 24: DEVICE_NEEDS_RESET"},
    {"rule-indirect-unnegotiated", test_rule_indirect_not_negotiated, "INDIRECT without the feature: DEVICE_NEEDS_RESET"},
    {"rule-avail-jump", test_rule_avail_jump, "available index jumping past the queue size: DEVICE_NEEDS_RESET"},
    {"rule-pfn-outside-ram", test_rule_pfn_outside_ram, "queue PFN outside RAM: DEVICE_NEEDS_RESET at once"},
    {"rule-notify-unset-queue", test_rule_notify_unset_queue, "notify of a queue never set up: ignored"},
    {"rule-readonly-writes", test_rule_readonly_writes, "writes to read-only registers: ignored"},
    {"rule-status-order", test_rule_status_order, "status bits out of order: accepted as legacy; NEEDS_RESET not writable"},
};
const unsigned rule_test_count = ARRAY_SIZE(rule_tests);

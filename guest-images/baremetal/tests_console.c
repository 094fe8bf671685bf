/* virtio-console conformance over the legacy virtio-pci transport (virtio
 * 1.2 sections 4.1.4.8 and 5.3), as a driver sees it: identity, feature
 * negotiation, the register block at every width, reset from every state,
 * queue setup, transmit and receive, polling and interrupt-driven
 * completion with both suppression schemes, and EVENT_IDX across the
 * 65535 -> 0 index wrap. Runs where minikvm has --console virtio (or QEMU
 * has -device virtio-serial-pci,disable-modern=on); elsewhere the tests
 * skip. */
#include "apic.h"
#include "clock.h"
#include "console.h"
#include "cpu.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

/* ---- Driver helpers shared with the misbehaving-driver tests ------------- */

struct console console_dev;

void console_cleanup_irq(void) {
    if (console_dev.vector) {
        vp_intx_unroute(&console_dev.dev, console_dev.vector);
        console_dev.vector = 0;
    }
    irq_disable();
}

static void console_cleanup(void) {
    /* The device must forget our rings before the next test reuses their
     * memory: reset it, and take its interrupt off the IOAPIC. */
    if (console_dev.dev.io) {
        vp_reset(&console_dev.dev);
        console_cleanup_irq();
    }
}

bool console_find(void) {
    memset(&console_dev, 0, sizeof console_dev);
    if (!virtio_pci_find(VIRTIO_PCI_DEVICE_CONSOLE, &console_dev.dev)) return false;
    test_cleanup = console_cleanup;
    return true;
}

bool console_start(uint32_t wanted) {
    struct console* c = &console_dev;
    c->features = vp_begin_init(&c->dev, wanted);
    CHECK(vp_setup_queue(&c->dev, &c->rx, CONSOLE_RX, c->features), "receiveq: no queue 0");
    CHECK(vp_setup_queue(&c->dev, &c->tx, CONSOLE_TX, c->features), "transmitq: no queue 1");
    /* 3.1.1 step 8: DRIVER_OK, the device is live. */
    vp_set_status(&c->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    CHECK(vp_status(&c->dev) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK),
          "status 0x%x after DRIVER_OK", vp_status(&c->dev));
    return true;
}

bool console_wait_used(struct virtq* vq, uint64_t timeout_ms) {
    const uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    while (!virtq_has_used(vq)) {
        if (now_ns() > deadline) return false;
        cpu_relax();
    }
    return true;
}

bool console_transmit(const struct virtq_buf* bufs, unsigned n, bool indirect) {
    struct console* c = &console_dev;
    struct virtq_desc* table = indirect ? alloc_zeroed(16 * n, 16) : 0;
    static int token;
    const int head = indirect ? virtq_add_indirect(&c->tx, bufs, n, 0, table, &token)
                              : virtq_add(&c->tx, bufs, n, 0, &token);
    CHECK(head >= 0, "transmitq full");
    vp_kick(&c->dev, &c->tx);
    /* Polling completion: the device returns the chain with length 0 (it
     * writes nothing into transmit buffers). */
    CHECK(console_wait_used(&c->tx, 1000), "transmit not completed in 1 s (status 0x%x)", vp_status(&c->dev));
    uint32_t len = 1;
    void* got = virtq_get(&c->tx, &len);
    CHECK(got == &token, "used ring returned %p, want %p (%s)", got, (void*)&token,
          c->tx.device_error ? c->tx.device_error : "");
    CHECK(len == 0, "transmit used length %u, want 0", len);
    return true;
}

bool console_print(const char* text) {
    struct virtq_buf buf = {text, (uint32_t)strlen(text)};
    return console_transmit(&buf, 1, false);
}

/* A transmit buffer that prints nothing, for tests that only count
 * completions. minikvm accepts zero-length buffers (they give access to
 * nothing, virtio/virtqueue.cpp), which keeps stdout clean even for the
 * 65836 transmits of console-event-idx-wrap. QEMU rejects them ("zero sized
 * buffers are not allowed") and stops the device, so elsewhere this is one
 * '.' byte. */
struct virtq_buf console_filler(void) {
    static const char dot[] = ".";
    return (struct virtq_buf){dot, boot_info.kind == BOOT_LINUX ? 0u : 1u};
}

bool console_send_filler(void) {
    const struct virtq_buf b = console_filler();
    return console_transmit(&b, 1, false);
}

/* Interrupts: the device's INTx goes to IOAPIC input `irq` (the interrupt
 * line register; minikvm: GSI 15 + slot), see vp_intx_route(). */
static void on_console_interrupt(struct interrupt_frame* f) {
    (void)f;
    struct console* c = &console_dev;
    const uint8_t isr = vp_isr(&c->dev); /* read-and-clear; lowers INTx */
    c->interrupts++;
    if (isr & VIRTIO_ISR_QUEUE) c->queue_interrupts++;
    if (isr & VIRTIO_ISR_CONFIG) c->config_interrupts++;
    if (!isr) c->spurious_interrupts++;
    lapic_eoi();
}

void console_enable_irq(void) {
    struct console* c = &console_dev;
    c->vector = vp_intx_route(&c->dev, on_console_interrupt);
}

bool console_wait_interrupts(volatile unsigned* counter, unsigned want, uint64_t timeout_ms) {
    const uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    while (*counter < want) {
        if (now_ns() > deadline) return false;
        cpu_relax();
    }
    return true;
}

#define NEED_CONSOLE()                                                                          \
    do {                                                                                        \
        if (!console_find()) return skip("no virtio-console (run minikvm with --console virtio)"); \
    } while (0)

/* ---- console-identity ------------------------------------------------------ */

static bool test_console_identity(void) {
    NEED_CONSOLE();
    const struct pci_address a = console_dev.dev.pci;
    CHECK(pci_read8(a, PCI_REVISION) == 0, "revision %u, want 0 (legacy drivers need it)", pci_read8(a, PCI_REVISION));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID) == VIRTIO_PCI_VENDOR, "subsystem vendor 0x%x",
          pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_ID) == 3, "subsystem ID %u, want 3 (console)", pci_read16(a, PCI_SUBSYSTEM_ID));
    const uint32_t class_code = pci_read32(a, PCI_REVISION) >> 8;
    CHECK(class_code == 0x078000, "class 0x%06x, want 0x078000 (communication, other)", class_code);
    CHECK(console_dev.dev.pin == 1, "interrupt pin %u, want 1 (INTA#)", console_dev.dev.pin);
    CHECK(console_dev.dev.bar_size >= VIRTIO_PCI_CONFIG + CONSOLE_CONFIG_SIZE, "BAR0 is %u bytes",
          console_dev.dev.bar_size);
    if (boot_info.kind == BOOT_LINUX)
        CHECK(console_dev.dev.irq == 15 + a.device, "interrupt line %u, want GSI 15 + slot %u", console_dev.dev.irq,
              a.device);
    info("00:%02x.0 I/O 0x%x+%u, INTA# -> GSI %u, device features 0x%08x", a.device, console_dev.dev.io,
         console_dev.dev.bar_size, console_dev.dev.irq, vp_device_features(&console_dev.dev));
    return true;
}

/* ---- console-features ------------------------------------------------------ */

static bool test_console_features(void) {
    NEED_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    vp_reset(d);
    const uint32_t offered = vp_device_features(d);
    CHECK(offered & (1u << CONSOLE_F_EMERG_WRITE), "EMERG_WRITE not offered (0x%x)", offered);
    CHECK(!(offered & (1u << CONSOLE_F_MULTIPORT)), "MULTIPORT offered without a control queue (0x%x)", offered);
    if (boot_info.kind == BOOT_LINUX) {
        CHECK(offered & (1u << VIRTIO_F_RING_EVENT_IDX), "EVENT_IDX not offered (0x%x)", offered);
        CHECK(offered & (1u << VIRTIO_F_RING_INDIRECT_DESC), "INDIRECT_DESC not offered (0x%x)", offered);
    }
    /* The driver features register keeps only what was offered. */
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    /* An offered bit alone sticks; an unoffered one never does (minikvm
     * drops it from the write; QEMU refuses the whole write). */
    for (unsigned bit = 0; bit < 32; ++bit) {
        if (bit == VIRTIO_F_BAD_FEATURE) continue; /* offered as a trap (QEMU): never accept it */
        vp_set_driver_features(d, 1u << bit);
        const uint32_t got = vp_read32(d, VIRTIO_PCI_GUEST_FEATURES);
        CHECK(got == ((1u << bit) & offered), "feature bit %u alone reads back 0x%x", bit, got);
    }
    vp_set_driver_features(d, ~(1u << VIRTIO_F_BAD_FEATURE));
    const uint32_t all = vp_read32(d, VIRTIO_PCI_GUEST_FEATURES);
    CHECK(!(all & ~offered), "writing all-ones gives features 0x%x, offered 0x%x", all, offered);
    if (boot_info.kind == BOOT_LINUX) CHECK(all == offered, "writing all-ones gives 0x%x, offered 0x%x", all, offered);
    /* Negotiated features take effect: EVENT_IDX on, then off, each with a
     * working transmit. */
    const uint32_t choices[2] = {offered & (1u << VIRTIO_F_RING_EVENT_IDX), 0};
    for (unsigned i = 0; i < 2; ++i) {
        if (!console_start(choices[i])) return false;
        CHECK(console_dev.features == choices[i], "negotiated 0x%x, asked for 0x%x", console_dev.features, choices[i]);
        CHECK(vp_read32(d, VIRTIO_PCI_GUEST_FEATURES) == choices[i], "driver features read 0x%x",
              vp_read32(d, VIRTIO_PCI_GUEST_FEATURES));
        if (!console_send_filler()) return false; /* an empty chain: nothing on stdout */
        if (choices[i])
            CHECK(*console_dev.tx.avail_event == console_dev.tx.shadow_avail,
                  "EVENT_IDX: avail_event %u after the device took everything up to %u", *console_dev.tx.avail_event,
                  console_dev.tx.shadow_avail);
        /* After DRIVER_OK the features are fixed: minikvm ignores the write
         * (a legacy driver must not make it; QEMU takes it). */
        if (boot_info.kind == BOOT_LINUX) {
            vp_set_driver_features(d, 0);
            CHECK(vp_read32(d, VIRTIO_PCI_GUEST_FEATURES) == choices[i], "features changed after DRIVER_OK to 0x%x",
                  vp_read32(d, VIRTIO_PCI_GUEST_FEATURES));
        }
    }
    vp_reset(d);
    CHECK(vp_read32(d, VIRTIO_PCI_GUEST_FEATURES) == 0, "driver features 0x%x after reset",
          vp_read32(d, VIRTIO_PCI_GUEST_FEATURES));
    info("device offers 0x%08x", offered);
    return true;
}

/* ---- console-registers: the block at every width -------------------------- */

static bool test_console_registers(void) {
    NEED_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    vp_reset(d);
    const uint32_t features = vp_device_features(d);
    /* minikvm: narrow reads of a wide register give its bytes, little-
     * endian (virtio_pci_legacy.h). QEMU answers only accesses of each
     * register's own width, so these are checked on minikvm only. */
    const bool any_width = boot_info.kind == BOOT_LINUX;
    if (any_width) {
        CHECK(vp_read16(d, 0) == (uint16_t)features && vp_read16(d, 2) == (uint16_t)(features >> 16),
              "host features by words: 0x%x 0x%x, dword 0x%x", vp_read16(d, 0), vp_read16(d, 2), features);
        for (unsigned i = 0; i < 4; ++i)
            CHECK(vp_read8(d, (uint16_t)i) == (uint8_t)(features >> (8 * i)), "host features byte %u reads 0x%x", i,
                  vp_read8(d, (uint16_t)i));
    }
    /* Queue select and size at every width. */
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, 1);
    CHECK(vp_read16(d, VIRTIO_PCI_QUEUE_SEL) == 1, "queue select reads %u", vp_read16(d, VIRTIO_PCI_QUEUE_SEL));
    const uint16_t size = vp_read16(d, VIRTIO_PCI_QUEUE_NUM);
    if (any_width) {
        CHECK(vp_read8(d, VIRTIO_PCI_QUEUE_SEL) == 1, "queue select byte reads %u", vp_read8(d, VIRTIO_PCI_QUEUE_SEL));
        CHECK(vp_read8(d, VIRTIO_PCI_QUEUE_NUM) == (uint8_t)size && vp_read8(d, VIRTIO_PCI_QUEUE_NUM + 1) == size >> 8,
              "queue size by bytes disagrees with 0x%x", size);
        /* A dword read at 12 covers queue size and queue select. */
        const uint32_t both = vp_read32(d, VIRTIO_PCI_QUEUE_NUM);
        CHECK(both == (size | 1u << 16), "dword at 12 reads 0x%x, want size 0x%x | select 1 << 16", both, size);
        vp_write8(d, VIRTIO_PCI_QUEUE_SEL, 0); /* a byte write selects queue 0 */
        CHECK(vp_read16(d, VIRTIO_PCI_QUEUE_SEL) == 0, "byte write of queue select: reads %u",
              vp_read16(d, VIRTIO_PCI_QUEUE_SEL));
    }
    /* Status at byte width; notify reads 0. */
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    CHECK(vp_read8(d, VIRTIO_PCI_STATUS) == VIRTIO_STATUS_ACKNOWLEDGE, "status reads 0x%x",
          vp_read8(d, VIRTIO_PCI_STATUS));
    if (boot_info.kind == BOOT_LINUX) CHECK(vp_read16(d, VIRTIO_PCI_QUEUE_NOTIFY) == 0, "queue notify reads non-zero");
    /* Device configuration (cols u16, rows u16, max_nr_ports u32,
     * emerg_wr u32) at every width: bytes, words, dwords agree. */
    uint8_t bytes[CONSOLE_CONFIG_SIZE];
    for (unsigned i = 0; i < CONSOLE_CONFIG_SIZE; ++i) bytes[i] = vp_read8(d, (uint16_t)(VIRTIO_PCI_CONFIG + i));
    for (unsigned i = 0; i < CONSOLE_CONFIG_SIZE; i += 2) {
        const uint16_t w = vp_read16(d, (uint16_t)(VIRTIO_PCI_CONFIG + i));
        CHECK(w == (bytes[i] | bytes[i + 1] << 8), "config word at %u reads 0x%x", i, w);
    }
    for (unsigned i = 0; i < CONSOLE_CONFIG_SIZE; i += 4) {
        const uint32_t v = vp_read32(d, (uint16_t)(VIRTIO_PCI_CONFIG + i));
        const uint32_t want =
            (uint32_t)bytes[i] | (uint32_t)bytes[i + 1] << 8 | (uint32_t)bytes[i + 2] << 16 | (uint32_t)bytes[i + 3] << 24;
        CHECK(v == want, "config dword at %u reads 0x%x, bytes say 0x%x", i, v, want);
    }
    /* A dword read covering three registers gives each one's bytes. */
    const uint32_t straddle = vp_read32(d, VIRTIO_PCI_QUEUE_NOTIFY); /* notify 0, status, ISR */
    CHECK((straddle & 0x00ffffffu) == (uint32_t)VIRTIO_STATUS_ACKNOWLEDGE << 16 || boot_info.kind != BOOT_LINUX,
          "dword at 16 (notify, status, ISR) reads 0x%x", straddle);
    vp_reset(d);
    info("queue 1 size %u; config cols %u rows %u max_nr_ports %u", size, bytes[0] | bytes[1] << 8,
         bytes[2] | bytes[3] << 8, bytes[4] | bytes[5] << 8);
    return true;
}

/* ---- console-emergency-write ------------------------------------------------ */

static bool test_console_emerg_write(void) {
    NEED_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    vp_reset(d);
    if (!(vp_device_features(d) & (1u << CONSOLE_F_EMERG_WRITE))) return skip("EMERG_WRITE not offered");
    /* Works before any queue exists, even before ACKNOWLEDGE. */
    const char* text = "MINIKVM-BAREMETAL-VIRTIO emergency write\n";
    for (const char* p = text; *p; ++p) vp_write32(d, VIRTIO_PCI_CONFIG + CONSOLE_CONFIG_EMERG_WR, (uint8_t)*p);
    CHECK(vp_status(d) == 0, "status 0x%x after emergency writes", vp_status(d));
    return true;
}

/* ---- console-transmit ---------------------------------------------------------- */

static bool test_console_transmit(void) {
    NEED_CONSOLE();
    if (!console_start(1u << VIRTIO_F_RING_INDIRECT_DESC)) return false;
    /* One buffer, a chain of three, and (if negotiated) an indirect table:
     * the bytes come out in chain order. */
    if (!console_print("MINIKVM-BAREMETAL-VIRTIO transmit one buffer\n")) return false;
    const struct virtq_buf three[3] = {{"MINIKVM-BAREMETAL-VIRTIO transmit ", 34}, {"a chain of ", 11}, {"three\n", 6}};
    if (!console_transmit(three, 3, false)) return false;
    if (console_dev.features & (1u << VIRTIO_F_RING_INDIRECT_DESC)) {
        const struct virtq_buf ind[3] = {{"MINIKVM-BAREMETAL-VIRTIO transmit ", 34}, {"an indirect ", 12}, {"table\n", 6}};
        if (!console_transmit(ind, 3, true)) return false;
    } else {
        info("INDIRECT_DESC not offered: indirect transmit not tried");
    }
    /* Fill the whole ring before one kick; all come back. */
    struct virtq* tx = &console_dev.tx;
    static char token[1];
    unsigned added = 0;
    const struct virtq_buf filler = console_filler();
    while (virtq_add(tx, &filler, 1, 0, token) >= 0) added++;
    CHECK(added == tx->size, "only %u of %u descriptors free", added, tx->size);
    vp_kick(&console_dev.dev, tx);
    unsigned back = 0;
    const uint64_t deadline = now_ns() + 1000000000ull;
    while (back < added && now_ns() < deadline)
        if (virtq_get(tx, 0)) back++;
    CHECK(back == added, "%u of %u buffers of a full ring came back", back, added);
    CHECK(tx->num_free == tx->size, "%u descriptors free after the full ring, want %u", tx->num_free, tx->size);
    vp_reset(&console_dev.dev);
    return true;
}

/* ---- console-receive -------------------------------------------------------------- */

static bool test_console_receive(void) {
    NEED_CONSOLE();
    if (!console_start(0)) return false;
    /* Post writable buffers; whatever minikvm's stdin holds comes into
     * them. The runner feeds "MINIKVM-BAREMETAL-INPUT\n". */
    static char buffers[4][16];
    for (int i = 0; i < 4; ++i) {
        struct virtq_buf b = {buffers[i], sizeof buffers[i]};
        CHECK(virtq_add(&console_dev.rx, &b, 0, 1, buffers[i]) >= 0, "receiveq full");
    }
    vp_kick(&console_dev.dev, &console_dev.rx);
    char text[65];
    size_t got = 0;
    const uint64_t deadline = now_ns() + 2000000000ull;
    while (now_ns() < deadline && (got == 0 || text[got - 1] != '\n')) {
        uint32_t len = 0;
        char* buf = virtq_get(&console_dev.rx, &len);
        if (!buf) {
            cpu_relax();
            continue;
        }
        CHECK(len <= 16, "receive used length %u > buffer size 16", len);
        for (uint32_t i = 0; i < len && got < sizeof text - 1; ++i) text[got++] = buf[i];
    }
    text[got] = '\0';
    CHECK(console_dev.rx.device_error == 0, "%s", console_dev.rx.device_error);
    if (got == 0) return skip("no input arrived (the runner pipes a line into minikvm's stdin)");
    CHECK(strcmp(text, "MINIKVM-BAREMETAL-INPUT\n") == 0, "received \"%s\"", text);
    info("received %zu bytes through the receiveq", got);
    return true;
}

/* ---- console-reset: reset from every state ------------------------------------- */

static bool reset_and_check(const char* state) {
    const struct virtio_pci* d = &console_dev.dev;
    vp_set_status(d, 0);
    CHECK(vp_status(d) == 0, "after reset in state %s: status 0x%x", state, vp_status(d));
    CHECK(vp_read32(d, VIRTIO_PCI_GUEST_FEATURES) == 0, "after reset in state %s: driver features 0x%x", state,
          vp_read32(d, VIRTIO_PCI_GUEST_FEATURES));
    CHECK(vp_read16(d, VIRTIO_PCI_QUEUE_SEL) == 0, "after reset in state %s: queue select %u", state,
          vp_read16(d, VIRTIO_PCI_QUEUE_SEL));
    CHECK(vp_queue_pfn(d, 0) == 0 && vp_queue_pfn(d, 1) == 0, "after reset in state %s: queue PFNs 0x%x 0x%x", state,
          vp_queue_pfn(d, 0), vp_queue_pfn(d, 1));
    CHECK(vp_isr(d) == 0, "after reset in state %s: ISR not 0", state);
    /* And the device works again from scratch. */
    const uintptr_t mark = alloc_mark();
    const bool ok = console_start(1u << VIRTIO_F_RING_EVENT_IDX) && console_send_filler();
    alloc_release(mark);
    CHECK(ok, "re-initialization after reset in state %s failed", state);
    vp_set_status(d, 0);
    return true;
}

static bool test_console_reset(void) {
    NEED_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    const uint8_t ack = VIRTIO_STATUS_ACKNOWLEDGE, drv = VIRTIO_STATUS_DRIVER, ok = VIRTIO_STATUS_DRIVER_OK;
    vp_reset(d);
    if (!reset_and_check("reset")) return false;
    vp_set_status(d, ack);
    if (!reset_and_check("ACKNOWLEDGE")) return false;
    vp_set_status(d, ack);
    vp_set_status(d, ack | drv);
    if (!reset_and_check("DRIVER")) return false;
    vp_begin_init(d, 0xffffffffu);
    if (!reset_and_check("features written")) return false;
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, 1);
    if (!reset_and_check("queue 1 selected")) return false;
    const uintptr_t mark = alloc_mark();
    vp_begin_init(d, 0);
    struct virtq vq;
    vp_setup_queue(d, &vq, 1, 0);
    if (!reset_and_check("queue placed")) return false;
    if (!console_start(0)) return false;
    if (!reset_and_check("DRIVER_OK")) return false;
    /* With a request in flight the device has not seen yet (no kick). */
    if (!console_start(0)) return false;
    struct virtq_buf b = console_filler();
    virtq_add(&console_dev.tx, &b, 1, 0, &b);
    virtq_kick_prepare(&console_dev.tx);
    if (!reset_and_check("request available, not kicked")) return false;
    /* With an interrupt pending (ISR set, INTx asserted). */
    if (!console_start(0)) return false;
    if (!console_send_filler()) return false;
    if (!reset_and_check("interrupt pending")) return false;
    /* FAILED set by the driver. */
    if (!console_start(0)) return false;
    vp_set_status(d, ack | drv | ok | VIRTIO_STATUS_FAILED);
    if (!reset_and_check("FAILED")) return false;
    /* Broken: a PFN outside RAM sets DEVICE_NEEDS_RESET. */
    vp_begin_init(d, 0);
    vp_set_queue_pfn(d, 1, (uint32_t)(ram_top() >> 12) + 0x100);
    if (boot_info.kind == BOOT_LINUX) /* QEMU's legacy devices do not check */
        CHECK(vp_status(d) & VIRTIO_STATUS_NEEDS_RESET, "PFN outside RAM: status 0x%x", vp_status(d));
    if (!reset_and_check("DEVICE_NEEDS_RESET")) return false;
    alloc_release(mark);
    info("reset from 11 states, each followed by a working re-initialization");
    return true;
}

/* ---- console-queues ---------------------------------------------------------------- */

static bool test_console_queues(void) {
    NEED_CONSOLE();
    const struct virtio_pci* d = &console_dev.dev;
    vp_reset(d);
    vp_begin_init(d, 0);
    /* Legacy: each queue's size is fixed by the device (the driver cannot
     * choose one; every legal size 1..32768 is covered by the unit tests of
     * the ring code against minikvm's queue engine). */
    for (uint16_t q = 0; q < 2; ++q) {
        const uint16_t size = vp_queue_size(d, q);
        CHECK(size && (size & (size - 1)) == 0 && size <= VIRTQ_MAX_SIZE, "queue %u size %u is not a legal size", q,
              size);
        vp_write16(d, VIRTIO_PCI_QUEUE_NUM, 4); /* read-only register */
        CHECK(vp_read16(d, VIRTIO_PCI_QUEUE_NUM) == size, "queue %u size changed by a write to %u", q,
              vp_read16(d, VIRTIO_PCI_QUEUE_NUM));
        CHECK(vp_queue_pfn(d, q) == 0, "queue %u PFN 0x%x after reset", q, vp_queue_pfn(d, q));
    }
    /* Without MULTIPORT only queues 0 and 1 are used; minikvm has no
     * others (QEMU's virtio-serial keeps its control queues anyway). */
    if (boot_info.kind == BOOT_LINUX)
        CHECK(vp_queue_size(d, 2) == 0, "queue 2 exists (size %u) without MULTIPORT", vp_queue_size(d, 2));
    if (boot_info.kind == BOOT_LINUX) /* QEMU ignores the select write and keeps queue 1 */
        CHECK(vp_queue_size(d, 0xffff) == 0, "queue 65535 exists");
    /* Place, read back, release (PFN 0), place again somewhere else. */
    struct virtq a, b;
    CHECK(vp_setup_queue(d, &a, 1, 0), "queue 1 setup");
    CHECK(vp_queue_pfn(d, 1) == virtq_pfn(&a), "queue 1 PFN reads 0x%x, wrote 0x%x", vp_queue_pfn(d, 1), virtq_pfn(&a));
    vp_set_queue_pfn(d, 1, 0);
    CHECK(vp_queue_pfn(d, 1) == 0, "queue 1 PFN 0x%x after release", vp_queue_pfn(d, 1));
    CHECK(vp_setup_queue(d, &b, 1, 0), "queue 1 setup again");
    CHECK(vp_queue_pfn(d, 1) == virtq_pfn(&b), "queue 1 PFN reads 0x%x after moving", vp_queue_pfn(d, 1));
    CHECK(vp_setup_queue(d, &console_dev.rx, 0, 0), "queue 0 setup");
    console_dev.tx = b;
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    /* After DRIVER_OK the queue belongs to the device: minikvm ignores a
     * PFN write and the queue keeps working where it was (QEMU would move
     * it: a driver must not do this). */
    if (boot_info.kind == BOOT_LINUX) {
        vp_set_queue_pfn(d, 1, virtq_pfn(&a));
        CHECK(vp_queue_pfn(d, 1) == virtq_pfn(&b), "PFN changed after DRIVER_OK");
    }
    if (!console_send_filler()) return false;
    info("queue sizes %u and %u", vp_queue_size(d, 0), vp_queue_size(d, 1));
    vp_reset(d);
    return true;
}

/* ---- console-interrupts: polling vs. interrupts, both suppression schemes ---- */

static bool send_empty(unsigned n) {
    struct virtq* tx = &console_dev.tx;
    static char token[1];
    const struct virtq_buf b = console_filler();
    for (unsigned i = 0; i < n; ++i) CHECK(virtq_add(tx, &b, 1, 0, token) >= 0, "transmitq full");
    vp_kick(&console_dev.dev, tx);
    const uint64_t deadline = now_ns() + 1000000000ull;
    for (unsigned got = 0; got < n;) {
        if (virtq_get(tx, 0))
            got++;
        else if (now_ns() > deadline)
            return fail("%u of %u transmits completed", got, n);
    }
    return true;
}

/* After the used entries are consumed, how many interrupts arrived within
 * a short wait. */
static unsigned interrupts_after(unsigned before) {
    delay_us(3000);
    return console_dev.queue_interrupts - before;
}

static bool test_console_interrupts(void) {
    NEED_CONSOLE();
    struct console* c = &console_dev;
    for (int event_idx = 0; event_idx < 2; ++event_idx) {
        if (!console_start(event_idx ? 1u << VIRTIO_F_RING_EVENT_IDX : 0)) return false;
        if (event_idx && !(c->features & (1u << VIRTIO_F_RING_EVENT_IDX))) {
            info("EVENT_IDX not offered: event-index suppression not tried");
            break;
        }
        const char* scheme = event_idx ? "EVENT_IDX" : "flags";
        console_enable_irq();
        /* Interrupt-driven completion: each transmit raises the queue
         * interrupt (ISR bit 0). */
        unsigned before = c->queue_interrupts;
        virtq_enable_interrupts(&c->tx);
        if (!send_empty(1)) return false;
        CHECK(console_wait_interrupts(&c->queue_interrupts, before + 1, 500), "%s: no interrupt for a transmit",
              scheme);
        CHECK(!virtq_enable_interrupts(&c->tx), "%s: used entries pending", scheme);
        /* Suppressed: no interrupt however many buffers come back. */
        virtq_disable_interrupts(&c->tx);
        before = c->queue_interrupts;
        if (!send_empty(5)) return false;
        unsigned n = interrupts_after(before);
        CHECK(n == 0, "%s: %u interrupts while suppressed", scheme, n);
        CHECK(vp_isr(&c->dev) == 0, "%s: ISR set while interrupts were suppressed", scheme);
        /* Re-enabled: the next one interrupts again. */
        CHECK(!virtq_enable_interrupts(&c->tx), "%s: used entries pending after re-enable", scheme);
        before = c->queue_interrupts;
        if (!send_empty(1)) return false;
        CHECK(console_wait_interrupts(&c->queue_interrupts, before + 1, 500), "%s: no interrupt after re-enable",
              scheme);
        if (event_idx) {
            /* Delayed: used_event 3 entries ahead: one interrupt, on the 3rd. */
            virtq_enable_interrupts_after(&c->tx, 3);
            before = c->queue_interrupts;
            for (int i = 1; i <= 2; ++i) {
                if (!send_empty(1)) return false;
                n = interrupts_after(before);
                CHECK(n == 0, "EVENT_IDX: interrupt after %d of 3 entries", i);
            }
            if (!send_empty(1)) return false;
            CHECK(console_wait_interrupts(&c->queue_interrupts, before + 1, 500),
                  "EVENT_IDX: no interrupt on the 3rd entry");
            n = interrupts_after(before);
            CHECK(n == 1, "EVENT_IDX: %u interrupts for 3 entries, want 1", n);
        }
        CHECK(c->spurious_interrupts == 0, "%s: %u interrupts with ISR 0", scheme, c->spurious_interrupts);
        console_cleanup();
    }
    info("%u queue interrupts through IOAPIC input %u (%s-triggered)", c->queue_interrupts, c->dev.irq,
         host_quirks.level_irq_unusable ? "edge" : "level");
    return true;
}

/* ---- console-event-idx-wrap ------------------------------------------------------ */

/* 65536 + 300 transmits in batches, so both free-running indices (avail
 * and used) wrap past 65535; every batch's kick decision follows
 * avail_event and the device keeps up. Filler buffers (console_filler):
 * nothing is printed on minikvm. */
static bool wrap_run(uint32_t features, const char* scheme) {
    if (!console_start(features)) return false;
    struct virtq* tx = &console_dev.tx;
    static char token[1];
    const struct virtq_buf b = console_filler();
    const unsigned total = 65536 + 300, batch = tx->size / 2 + 1; /* odd batches straddle the ring */
    unsigned sent = 0, done = 0, kicks = 0, batches = 0;
    const uint64_t deadline = now_ns() + 20000000000ull;
    while (done < total) {
        CHECK(now_ns() < deadline, "%s: only %u of %u transmits done in 20 s", scheme, done, total);
        unsigned added = 0;
        while (sent < total && added < batch && virtq_add(tx, &b, 1, 0, token) >= 0) sent++, added++;
        if (added) {
            batches++;
            if (vp_kick(&console_dev.dev, tx)) kicks++;
        }
        while (virtq_get(tx, 0)) done++;
        CHECK(!tx->device_error, "%s: %s", scheme, tx->device_error);
        CHECK(!(vp_status(&console_dev.dev) & VIRTIO_STATUS_NEEDS_RESET), "%s: device needs reset at %u", scheme, done);
    }
    CHECK(tx->last_used == (uint16_t)total && *tx->used_idx == (uint16_t)total, "%s: used index %u, want %u", scheme,
          *tx->used_idx, (uint16_t)total);
    info("%s: %u transmits in %u batches with %u kicks; indices wrapped to %u", scheme, total, batches, kicks,
         tx->last_used);
    /* With EVENT_IDX the device asks for a kick exactly when it ran dry, so
     * never more kicks than batches; it is fine to need fewer. */
    CHECK(kicks <= batches && kicks > 0, "%s: %u kicks for %u batches", scheme, kicks, batches);
    vp_reset(&console_dev.dev);
    return true;
}

static bool test_console_event_idx_wrap(void) {
    NEED_CONSOLE();
    vp_reset(&console_dev.dev);
    const uint32_t offered = vp_device_features(&console_dev.dev);
    if (offered & (1u << VIRTIO_F_RING_EVENT_IDX)) {
        if (!wrap_run(1u << VIRTIO_F_RING_EVENT_IDX, "EVENT_IDX")) return false;
    } else {
        info("EVENT_IDX not offered");
    }
    return wrap_run(0, "flags");
}

const struct test console_tests[] = {
    {"console-identity", test_console_identity, "virtio-console PCI identity: IDs, class, revision 0, INTA# routing"},
    {"console-features", test_console_features, "feature negotiation: only offered bits stick; fixed after DRIVER_OK"},
    {"console-registers", test_console_registers, "legacy register block and device config at every access width"},
    {"console-emerg-write", test_console_emerg_write, "EMERG_WRITE bytes appear on stdout before any queue exists"},
    {"console-transmit", test_console_transmit, "transmit: one buffer, a chain, an indirect table, a full ring"},
    {"console-receive", test_console_receive, "receive: host stdin into posted writable buffers"},
    {"console-reset", test_console_reset, "reset from every state, then a working re-initialization"},
    {"console-queues", test_console_queues, "queue sizes, PFN placement, release and read-only size register"},
    {"console-interrupts", test_console_interrupts,
     "interrupt-driven completion via IOAPIC and LAPIC; flag and EVENT_IDX suppression"},
    {"console-event-idx-wrap", test_console_event_idx_wrap, "65836 transmits: indices wrap at 65535, with and without EVENT_IDX"},
};
const unsigned console_test_count = ARRAY_SIZE(console_tests);

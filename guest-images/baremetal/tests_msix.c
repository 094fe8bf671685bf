/* MSI-X on the legacy virtio-pci transport (virtio 1.2 4.1.4.8 and PCI
 * Local Bus 3.0 6.8.2), against virtio-console: the capability and its
 * BAR, the register block growing by two vector registers (device
 * configuration moving from 20 to 24) and shrinking back, a vector per
 * queue, NO_VECTOR for what the device cannot map, the mask and pending
 * rules (a completion while masked is delivered on unmask exactly once),
 * and a driver that misuses all of it: table writes of every width, a
 * message that is no interrupt, a vector out of range, MSI-X enabled with
 * everything masked, vectors changed between requests, MSI-X toggled while
 * the device is live. MSI is edge-triggered, so this runs where level
 * interrupts do not (PVM).
 *
 * minikvm's layout (a vector per queue plus one, table at 0 and PBA at
 * 2048 of memory BAR 1) is checked only when minikvm booted us; the rest is
 * the spec and runs anywhere the device has MSI-X. */
#include "apic.h"
#include "clock.h"
#include "console.h"
#include "cpu.h"
#include "msix.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define ON_MINIKVM (boot_info.kind == BOOT_LINUX)
#define VECTOR_MSIX_BASE 0xa0 /* table entry e interrupts with APIC vector 0xa0 + e */
#define MAX_ENTRIES 8
#define SETTLE_MS 20 /* time for an interrupt that should not come to show up */

/* Table entries this driver uses on virtio-console. */
#define E_CONFIG 0
#define E_RX 1
#define E_TX 2

static struct msix msix;
static volatile unsigned hits[MAX_ENTRIES];

static void on_msix(struct interrupt_frame* f) {
    const uint64_t e = f->vector - VECTOR_MSIX_BASE;
    if (e < MAX_ENTRIES) hits[e]++;
    lapic_eoi();
}

static void msix_cleanup(void) {
    if (msix.cap) {
        for (unsigned e = 0; e < msix.vectors && e < MAX_ENTRIES; ++e) {
            msix_set_masked(&msix, e, true);
            set_interrupt_handler(VECTOR_MSIX_BASE + e, 0);
        }
        msix_set_function_mask(&msix, false);
        vp_set_msix(&console_dev.dev, &msix, false);
    }
    /* Then the console's own cleanup: reset, INTx off the IOAPIC. */
    if (console_dev.dev.io) vp_reset(&console_dev.dev);
    console_cleanup_irq();
}

/* The console with MSI-X found (not yet enabled) and the handlers in
 * place; otherwise the test skips. */
static void msix_prepare(void) {
    test_cleanup = msix_cleanup;
    for (unsigned e = 0; e < msix.vectors && e < MAX_ENTRIES; ++e)
        set_interrupt_handler(VECTOR_MSIX_BASE + e, on_msix);
    irq_enable();
}

#define NEED_MSIX()                                                                                             \
    do {                                                                                                        \
        memset(&msix, 0, sizeof msix);                                                                          \
        for (unsigned e_ = 0; e_ < MAX_ENTRIES; ++e_) hits[e_] = 0;                                             \
        if (!console_find()) return skip("no virtio-console (run minikvm with --console virtio)");              \
        if (!msix_find(console_dev.dev.pci, &msix)) return skip("virtio-console has no MSI-X (minikvm --msix off?)"); \
        msix_prepare();                                                                                         \
    } while (0)

/* Entries programmed for this CPU, unmasked; MSI-X on; the device started
 * with config, receive and transmit each on their own vector. */
static bool start_with_vectors(void) {
    for (unsigned e = 0; e <= E_TX; ++e) {
        msix_program(&msix, e, (uint8_t)(VECTOR_MSIX_BASE + e));
        msix_set_masked(&msix, e, false);
    }
    vp_set_msix(&console_dev.dev, &msix, true);
    struct console* c = &console_dev;
    c->features = vp_begin_init(&c->dev, 0);
    CHECK(vp_set_config_vector(&c->dev, E_CONFIG) == E_CONFIG, "config vector reads back 0x%x",
          vp_read16(&c->dev, VIRTIO_MSI_CONFIG_VECTOR));
    CHECK(vp_setup_queue(&c->dev, &c->rx, CONSOLE_RX, c->features), "no receiveq");
    CHECK(vp_setup_queue(&c->dev, &c->tx, CONSOLE_TX, c->features), "no transmitq");
    CHECK(vp_set_queue_vector(&c->dev, CONSOLE_RX, E_RX) == E_RX, "receiveq vector not taken");
    CHECK(vp_set_queue_vector(&c->dev, CONSOLE_TX, E_TX) == E_TX, "transmitq vector not taken");
    vp_set_status(&c->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    return true;
}

/* Waits for entry `e` to have interrupted `want` times, then a little
 * longer: more would be a duplicate. */
static bool expect_hits(unsigned e, unsigned want, const char* what) {
    const uint64_t deadline = now_ns() + 1000000000ull;
    while (hits[e] < want && now_ns() < deadline) cpu_relax();
    delay_us(SETTLE_MS * 1000);
    CHECK(hits[e] == want, "%s: vector %u interrupted %u times, want %u", what, e, hits[e], want);
    return true;
}

static bool transmit_filler(void) { return console_send_filler(); }

/* ---- msix-capability ------------------------------------------------------- */

static bool test_msix_capability(void) {
    NEED_MSIX();
    const uint16_t control = msix_control(&msix);
    CHECK(!(control & MSIX_CONTROL_ENABLE), "MSI-X enabled before the driver asked (control 0x%x)", control);
    CHECK(msix.vectors >= 2, "%u vectors: the legacy driver needs config + one for the queues", msix.vectors);
    CHECK(msix.bar_size >= 4096, "table BAR is %llu bytes; it should own its page", (unsigned long long)msix.bar_size);
    CHECK(msix.table_offset + msix.vectors * 16u <= msix.bar_size, "table past its BAR");
    if (ON_MINIKVM) {
        CHECK(msix.vectors == 3, "%u vectors, want 3: config, receiveq, transmitq", msix.vectors);
        CHECK(msix.table_bar == 1 && msix.table_offset == 0, "table at BAR%u+0x%x, want BAR1+0", msix.table_bar,
              msix.table_offset);
        CHECK(msix.pba_bar == 1 && msix.pba_offset == 2048, "PBA at BAR%u+0x%x, want BAR1+0x800", msix.pba_bar,
              msix.pba_offset);
        /* Message Control: only enable and function mask are writable. */
        pci_write16(msix.pci, (uint8_t)(msix.cap + 2), 0x3fff);
        CHECK(msix_control(&msix) == control, "table size writable: control 0x%x", msix_control(&msix));
    }
    for (unsigned e = 0; e < msix.vectors && e < MAX_ENTRIES; ++e) {
        CHECK(msix_masked(&msix, e), "vector %u starts unmasked", e);
        CHECK(!msix_pending(&msix, e), "vector %u starts pending", e);
    }
    info("MSI-X cap at 0x%x: %u vectors, table BAR%u+0x%x, PBA BAR%u+0x%x, BAR %llu bytes", msix.cap, msix.vectors,
         msix.table_bar, msix.table_offset, msix.pba_bar, msix.pba_offset, (unsigned long long)msix.bar_size);
    return true;
}

/* ---- msix-registers -------------------------------------------------------- */

static bool test_msix_registers(void) {
    NEED_MSIX();
    struct virtio_pci* d = &console_dev.dev;
    vp_reset(d);
    uint8_t before[CONSOLE_CONFIG_SIZE];
    for (unsigned i = 0; i < CONSOLE_CONFIG_SIZE; ++i) before[i] = vp_read8(d, (uint16_t)(VIRTIO_PCI_CONFIG + i));

    vp_set_msix(d, &msix, true);
    CHECK(vp_read16(d, VIRTIO_MSI_CONFIG_VECTOR) == VIRTIO_MSI_NO_VECTOR, "config vector 0x%x after reset",
          vp_read16(d, VIRTIO_MSI_CONFIG_VECTOR));
    for (uint16_t q = 0; q < 2; ++q) {
        vp_write16(d, VIRTIO_PCI_QUEUE_SEL, q);
        CHECK(vp_read16(d, VIRTIO_MSI_QUEUE_VECTOR) == VIRTIO_MSI_NO_VECTOR, "queue %u vector 0x%x after reset", q,
              vp_read16(d, VIRTIO_MSI_QUEUE_VECTOR));
    }
    for (unsigned i = 0; i < CONSOLE_CONFIG_SIZE; ++i)
        CHECK(vp_read8(d, (uint16_t)(VIRTIO_PCI_CONFIG_MSIX + i)) == before[i],
              "config byte %u moved to 24+%u reads 0x%x, was 0x%x", i, i, vp_read8(d, (uint16_t)(24 + i)), before[i]);
    /* The vector registers are writable and per queue. */
    CHECK(vp_set_config_vector(d, 0) == 0, "config vector 0 not taken");
    CHECK(vp_set_queue_vector(d, 0, 1) == 1, "queue 0 vector 1 not taken");
    CHECK(vp_set_queue_vector(d, 1, 2) == 2, "queue 1 vector 2 not taken");
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, 0);
    CHECK(vp_read16(d, VIRTIO_MSI_QUEUE_VECTOR) == 1, "queue 0 vector changed by queue 1's");
    /* A 32-bit read at 20 gives both registers. */
    CHECK(vp_read32(d, VIRTIO_MSI_CONFIG_VECTOR) == (0u | 1u << 16), "dword at 20 reads 0x%x",
          vp_read32(d, VIRTIO_MSI_CONFIG_VECTOR));
    /* The vectors are device state: a reset unmaps them all. */
    vp_reset(d);
    CHECK(vp_read16(d, VIRTIO_MSI_CONFIG_VECTOR) == VIRTIO_MSI_NO_VECTOR, "config vector survives reset");
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, 1);
    CHECK(vp_read16(d, VIRTIO_MSI_QUEUE_VECTOR) == VIRTIO_MSI_NO_VECTOR, "queue vector survives reset");

    vp_set_msix(d, &msix, false);
    for (unsigned i = 0; i < CONSOLE_CONFIG_SIZE; ++i)
        CHECK(vp_read8(d, (uint16_t)(VIRTIO_PCI_CONFIG + i)) == before[i], "config byte %u not back at 20+%u", i, i);
    return true;
}

/* ---- msix-no-vector -------------------------------------------------------- */

static bool test_msix_no_vector(void) {
    NEED_MSIX();
    if (!start_with_vectors()) return false;
    struct virtio_pci* d = &console_dev.dev;
    /* Vectors the table does not have read back NO_VECTOR (4.1.4.8). */
    CHECK(vp_set_config_vector(d, msix.vectors) == VIRTIO_MSI_NO_VECTOR, "config vector %u (of %u) accepted",
          msix.vectors, msix.vectors);
    CHECK(vp_set_queue_vector(d, CONSOLE_TX, 0x7ff) == VIRTIO_MSI_NO_VECTOR, "queue vector 0x7ff accepted");
    CHECK(vp_set_queue_vector(d, CONSOLE_TX, 0xfffe) == VIRTIO_MSI_NO_VECTOR, "queue vector 0xfffe accepted");
    /* A queue without a vector completes silently: no MSI, no INTx, no ISR. */
    for (int i = 0; i < 3; ++i)
        if (!transmit_filler()) return false;
    delay_us(SETTLE_MS * 1000);
    for (unsigned e = 0; e <= E_TX; ++e) CHECK(hits[e] == 0, "vector %u interrupted %u times", e, hits[e]);
    CHECK(vp_isr(d) == 0, "ISR set while MSI-X is on");
    CHECK(!(pci_read16(d->pci, PCI_STATUS) & PCI_STATUS_INTERRUPT), "INTx asserted while MSI-X is on");
    /* Mapped again: interrupts again. */
    CHECK(vp_set_queue_vector(d, CONSOLE_TX, E_TX) == E_TX, "transmitq vector not taken back");
    if (!transmit_filler()) return false;
    return expect_hits(E_TX, 1, "after remapping");
}

/* ---- msix-interrupts ------------------------------------------------------- */

static bool test_msix_interrupts(void) {
    NEED_MSIX();
    if (!start_with_vectors()) return false;
    struct virtio_pci* d = &console_dev.dev;
    for (unsigned i = 1; i <= 4; ++i) {
        if (!transmit_filler()) return false;
        if (!expect_hits(E_TX, i, "transmit completion")) return false;
    }
    CHECK(hits[E_RX] == 0 && hits[E_CONFIG] == 0, "other vectors interrupted: rx %u config %u", hits[E_RX],
          hits[E_CONFIG]);
    CHECK(vp_isr(d) == 0, "ISR set while MSI-X is on");
    CHECK(!(pci_read16(d->pci, PCI_STATUS) & PCI_STATUS_INTERRUPT), "INTx asserted while MSI-X is on");
    /* Both queues on one vector (Linux's fallback when vectors are short). */
    CHECK(vp_set_queue_vector(d, CONSOLE_TX, E_RX) == E_RX, "shared vector not taken");
    if (!transmit_filler()) return false;
    if (!expect_hits(E_RX, 1, "shared vector")) return false;
    CHECK(hits[E_TX] == 4, "old vector still interrupts");
    return true;
}

/* ---- msix-mask --------------------------------------------------------------- */

static bool test_msix_mask(void) {
    NEED_MSIX();
    if (!start_with_vectors()) return false;
    /* Per-vector mask: completions set the pending bit, several coalesce,
     * the unmask delivers exactly one. */
    msix_set_masked(&msix, E_TX, true);
    for (int i = 0; i < 3; ++i)
        if (!transmit_filler()) return false;
    delay_us(SETTLE_MS * 1000);
    CHECK(hits[E_TX] == 0, "masked vector interrupted %u times", hits[E_TX]);
    CHECK(msix_pending(&msix, E_TX), "masked vector's pending bit clear after a completion");
    CHECK(!msix_pending(&msix, E_RX), "receive vector pending");
    msix_set_masked(&msix, E_TX, false);
    if (!expect_hits(E_TX, 1, "unmask after three masked completions")) return false;
    CHECK(!msix_pending(&msix, E_TX), "pending bit still set after delivery");
    /* Unmasking again with nothing pending delivers nothing. */
    msix_set_masked(&msix, E_TX, true);
    msix_set_masked(&msix, E_TX, false);
    if (!expect_hits(E_TX, 1, "unmask with nothing pending")) return false;

    /* Function mask: the same, for every vector at once. */
    msix_set_function_mask(&msix, true);
    if (!transmit_filler()) return false;
    delay_us(SETTLE_MS * 1000);
    CHECK(hits[E_TX] == 1, "function-masked vector interrupted");
    CHECK(msix_pending(&msix, E_TX), "pending bit clear under the function mask");
    msix_set_function_mask(&msix, false);
    if (!expect_hits(E_TX, 2, "function unmask")) return false;

    /* Bus mastering off: an MSI is a memory write, so none may be sent;
     * it waits like a masked one. (minikvm's devices do their ring DMA
     * regardless; on hardware and QEMU the transmit itself would stall.) */
    if (ON_MINIKVM) {
        const uint16_t command = pci_read16(msix.pci, PCI_COMMAND);
        pci_write16(msix.pci, PCI_COMMAND, (uint16_t)(command & ~PCI_COMMAND_MASTER));
        if (!transmit_filler()) return false;
        delay_us(SETTLE_MS * 1000);
        CHECK(hits[E_TX] == 2, "MSI sent with bus mastering off");
        CHECK(msix_pending(&msix, E_TX), "pending bit clear with bus mastering off");
        pci_write16(msix.pci, PCI_COMMAND, command);
        if (!expect_hits(E_TX, 3, "bus mastering back on")) return false;
    }
    return true;
}

/* ---- msix-enable-masked ------------------------------------------------------ */

static bool test_msix_enable_masked(void) {
    NEED_MSIX();
    /* Everything masked when MSI-X goes on (the power-on state): completions
     * wait in the PBA, nothing is lost. */
    if (!start_with_vectors()) return false;
    for (unsigned e = 0; e <= E_TX; ++e) msix_set_masked(&msix, e, true);
    msix_set_function_mask(&msix, true);
    if (!transmit_filler()) return false;
    delay_us(SETTLE_MS * 1000);
    CHECK(hits[E_TX] == 0, "interrupt while everything is masked");
    msix_set_function_mask(&msix, false);
    delay_us(SETTLE_MS * 1000);
    CHECK(hits[E_TX] == 0, "function unmask delivered a vector that is still masked");
    CHECK(msix_pending(&msix, E_TX), "pending bit lost");
    msix_set_masked(&msix, E_TX, false);
    return expect_hits(E_TX, 1, "vector unmask");
}

/* ---- msix-bad-message -------------------------------------------------------- */

static bool test_msix_bad_message(void) {
    NEED_MSIX();
    if (!start_with_vectors()) return false;
    /* An address outside the interrupt window would be a DMA write to
     * memory: the device must not make it. Guest RAM at 1 MiB is watched. */
    static volatile uint32_t target[4];
    const uint64_t ram = (uint64_t)(uintptr_t)target;
    target[0] = 0x5a5a5a5a;
    msix_write_message(&msix, E_TX, ram, 0xdeadbeef);
    if (!transmit_filler()) return false;
    delay_us(SETTLE_MS * 1000);
    CHECK(target[0] == 0x5a5a5a5a, "the device wrote 0x%x to RAM through an MSI", target[0]);
    CHECK(hits[E_TX] == 0, "interrupt from a message that is none");
    /* Upper address bits set: also no interrupt. */
    msix_write_message(&msix, E_TX, (1ull << 32) | MSI_ADDRESS_BASE, VECTOR_MSIX_BASE + E_TX);
    if (!transmit_filler()) return false;
    delay_us(SETTLE_MS * 1000);
    CHECK(hits[E_TX] == 0, "interrupt from an address above 4 GiB");
    /* A proper message again: the device kept working. */
    msix_program(&msix, E_TX, VECTOR_MSIX_BASE + E_TX);
    if (!transmit_filler()) return false;
    return expect_hits(E_TX, 1, "after the message was fixed");
}

/* ---- msix-table-widths --------------------------------------------------------- */

static bool test_msix_table_widths(void) {
    NEED_MSIX();
    const unsigned e = E_TX;
    const uint64_t at = msix.table + (uint64_t)e * MSIX_ENTRY_SIZE;
    /* Bytes, words, dwords, qwords at every offset of the entry. */
    for (unsigned i = 0; i < 12; ++i) mmio_write8(at + i, (uint8_t)(0x10 + i));
    CHECK(mmio_read32(at) == 0x13121110 && mmio_read32(at + 4) == 0x17161514 && mmio_read32(at + 8) == 0x1b1a1918,
          "byte writes read back 0x%x 0x%x 0x%x", mmio_read32(at), mmio_read32(at + 4), mmio_read32(at + 8));
    for (unsigned i = 0; i < 12; i += 2) mmio_write16(at + i, (uint16_t)(0x2000 + i));
    CHECK(mmio_read16(at + 10) == 0x200a, "word write at +10 reads 0x%x", mmio_read16(at + 10));
    mmio_write64(at, 0x00000000fee00000ull);
    CHECK(mmio_read64(at) == 0x00000000fee00000ull, "qword address reads 0x%llx", (unsigned long long)mmio_read64(at));
    /* Vector control: only the mask bit; the reserved bits read 0. */
    mmio_write32(at + 12, 0xfffffffe);
    CHECK(mmio_read32(at + 12) == 0, "vector control reads 0x%x after writing 0xfffffffe", mmio_read32(at + 12));
    mmio_write8(at + 13, 0xff);
    CHECK(mmio_read32(at + 12) == 0, "a byte into reserved vector control bits stuck: 0x%x", mmio_read32(at + 12));
    mmio_write32(at + 12, 0xffffffff);
    CHECK(mmio_read32(at + 12) == 1, "vector control reads 0x%x after all-ones", mmio_read32(at + 12));
    /* A qword across data and vector control. */
    mmio_write64(at + 8, 0x0000000100000042ull);
    CHECK(mmio_read32(at + 8) == 0x42 && msix_masked(&msix, e), "qword at +8: data 0x%x control 0x%x",
          mmio_read32(at + 8), mmio_read32(at + 12));
    /* The PBA is read-only. */
    const uint32_t pba = mmio_read32(msix.pba);
    mmio_write32(msix.pba, 0xffffffff);
    CHECK(mmio_read32(msix.pba) == pba, "PBA took a write: 0x%x", mmio_read32(msix.pba));
    if (ON_MINIKVM) {
        /* Past the table and between table and PBA: zeros, writes dropped. */
        const uint64_t gap = msix.table + msix.vectors * 16u;
        mmio_write32(gap, 0x12345678);
        CHECK(mmio_read32(gap) == 0, "past the table reads 0x%x", mmio_read32(gap));
        CHECK(mmio_read32(msix.table + msix.bar_size - 4) == 0, "end of the BAR not zero");
    }
    /* None of it broke the device: a real vector works. */
    if (!start_with_vectors()) return false;
    if (!transmit_filler()) return false;
    return expect_hits(E_TX, 1, "after the width tests");
}

/* ---- msix-retarget --------------------------------------------------------------- */

static bool test_msix_retarget(void) {
    NEED_MSIX();
    if (!start_with_vectors()) return false;
    /* The entry's message changes while unmasked (Linux moving an IRQ to
     * another CPU rewrites it masked, but a driver may not): the next
     * interrupt uses the new message. */
    if (!transmit_filler()) return false;
    if (!expect_hits(E_TX, 1, "first")) return false;
    msix_write_message(&msix, E_TX, MSI_ADDRESS_BASE | (uint64_t)lapic_id() << 12, VECTOR_MSIX_BASE + E_RX);
    if (!transmit_filler()) return false;
    if (!expect_hits(E_RX, 1, "entry rewritten to another APIC vector")) return false;
    CHECK(hits[E_TX] == 1, "old APIC vector still used");
    /* The queue moved to another table entry between requests. */
    msix_program(&msix, E_TX, VECTOR_MSIX_BASE + E_TX);
    CHECK(vp_set_queue_vector(&console_dev.dev, CONSOLE_TX, E_CONFIG) == E_CONFIG, "vector change refused");
    if (!transmit_filler()) return false;
    if (!expect_hits(E_CONFIG, 1, "queue moved to entry 0")) return false;
    CHECK(vp_set_queue_vector(&console_dev.dev, CONSOLE_TX, E_TX) == E_TX, "vector change refused");
    if (!transmit_filler()) return false;
    return expect_hits(E_TX, 2, "queue moved back");
}

/* ---- msix-toggle ------------------------------------------------------------------- */

static bool test_msix_toggle(void) {
    NEED_MSIX();
    if (!start_with_vectors()) return false;
    struct console* c = &console_dev;
    if (!transmit_filler()) return false;
    if (!expect_hits(E_TX, 1, "MSI-X")) return false;
    /* MSI-X off while live: INTx and the ISR carry the next completion. */
    console_enable_irq();
    vp_set_msix(&c->dev, &msix, false);
    const unsigned before = c->queue_interrupts;
    if (!transmit_filler()) return false;
    CHECK(console_wait_interrupts(&c->queue_interrupts, before + 1, 1000), "no INTx after MSI-X was turned off");
    CHECK(hits[E_TX] == 1, "MSI-X vector used while MSI-X is off");
    /* And on again: MSI-X, and INTx quiet. */
    vp_set_msix(&c->dev, &msix, true);
    const unsigned intx = c->interrupts;
    if (!transmit_filler()) return false;
    if (!expect_hits(E_TX, 2, "MSI-X back on")) return false;
    CHECK(c->interrupts == intx, "INTx interrupted while MSI-X is on");
    return true;
}

/* ---- msix-reset --------------------------------------------------------------------- */

static bool test_msix_reset(void) {
    NEED_MSIX();
    if (!start_with_vectors()) return false;
    struct console* c = &console_dev;
    if (!transmit_filler()) return false;
    if (!expect_hits(E_TX, 1, "before reset")) return false;
    /* A reset unmaps the vectors: the device is silent until they are set. */
    vp_reset(&c->dev);
    if (!start_with_vectors()) return false;
    if (!transmit_filler()) return false;
    if (!expect_hits(E_TX, 2, "after reset and re-initialization")) return false;
    if (ON_MINIKVM) {
        /* A broken ring (next out of range): NEEDS_RESET and the
         * configuration-change interrupt, on the config vector. */
        volatile struct virtq_desc* desc = &c->tx.desc[0];
        desc->addr = virtq_dma(&c->tx, &msix);
        desc->len = 1;
        desc->flags = VIRTQ_DESC_F_NEXT;
        desc->next = c->tx.size;
        c->tx.avail_ring[c->tx.shadow_avail & (c->tx.size - 1)] = 0;
        c->tx.shadow_avail++;
        virtq_kick_prepare(&c->tx);
        vp_notify(&c->dev, CONSOLE_TX);
        if (!expect_hits(E_CONFIG, 1, "configuration change after DEVICE_NEEDS_RESET")) return false;
        CHECK(vp_status(&c->dev) & VIRTIO_STATUS_NEEDS_RESET, "status 0x%x", vp_status(&c->dev));
        vp_reset(&c->dev);
        if (!start_with_vectors()) return false;
        if (!transmit_filler()) return false;
        if (!expect_hits(E_TX, 3, "after recovery")) return false;
    }
    return true;
}

const struct test msix_tests[] = {
    {"msix-capability", test_msix_capability, "MSI-X capability: table and PBA in a memory BAR, all masked"},
    {"msix-registers", test_msix_registers, "vector registers at 20/22 with MSI-X on, config at 24 and back"},
    {"msix-no-vector", test_msix_no_vector, "out-of-range vectors read NO_VECTOR; unmapped queues are silent"},
    {"msix-interrupts", test_msix_interrupts, "one MSI per completion on the queue's vector; no ISR, no INTx"},
    {"msix-mask", test_msix_mask, "masked: pending bit, delivered once on unmask; function mask too"},
    {"msix-enable-masked", test_msix_enable_masked, "MSI-X on with everything masked: nothing lost"},
    {"msix-bad-message", test_msix_bad_message, "a message outside 0xFEExxxxx is never written to memory"},
    {"msix-table-widths", test_msix_table_widths, "table accesses of every width; reserved bits; read-only PBA"},
    {"msix-retarget", test_msix_retarget, "entry and queue vectors changed between interrupts"},
    {"msix-toggle", test_msix_toggle, "MSI-X off and on while the device is live: INTx then MSI-X"},
    {"msix-reset", test_msix_reset, "vectors after reset; the NEEDS_RESET interrupt on the config vector"},
};
const unsigned msix_test_count = ARRAY_SIZE(msix_tests);

#include <catch2/catch.hpp>

#include <ctime>
#include <string>
#include <vector>

#include "test_helpers.h"
#include "devices/acpi_pm.h"
#include "devices/boot_complete_marker.h"
#include "devices/cmos_rtc.h"
#include "devices/debug_exit.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "devices/serial_8250.h"
#include "vmm/backends/console_input.h"
#include "vmm/core/exit_codes.h"

using namespace minikvm;

namespace {

using test_helpers::FakeIrq;

struct Uart {
    FakeIrq irq;
    std::string output;
    Serial8250 serial{irq, [this](uint8_t b) { output += static_cast<char>(b); }};
    uint8_t in(uint64_t reg) {
        uint8_t v = 0;
        serial.read(reg, std::span(&v, 1));
        return v;
    }
    void out(uint64_t reg, uint8_t v) { serial.write(reg, std::span(&v, 1)); }
};

}  // namespace

TEST_CASE("8250: idle line status is 0x60 and THR writes reach the output") {
    Uart u;
    CHECK(u.in(5) == 0x60);
    u.out(0, 'h');
    u.out(0, 'i');
    CHECK(u.output == "hi");
    CHECK(u.in(5) == 0x60);
    CHECK(u.in(2) == 0x01);  // no interrupt pending
    CHECK_FALSE(u.irq.level);
}

TEST_CASE("8250: enabling THRI raises THRE; reading IIR acknowledges it; a write re-arms it") {
    Uart u;
    u.out(1, 0x02);
    CHECK(u.irq.level);
    CHECK((u.in(2) & 0x0f) == 0x02);
    CHECK_FALSE(u.irq.level);
    CHECK(u.in(2) == 0x01);
    u.out(0, 'x');  // transmitted at once: THR empty again
    CHECK(u.irq.level);
    CHECK(u.irq.rising_edges == 2);
    u.out(1, 0x00);
    CHECK_FALSE(u.irq.level);
}

TEST_CASE("8250: received bytes set DR and raise RDA until read") {
    Uart u;
    const uint8_t bytes[] = {'a', 'b'};
    CHECK(u.serial.receive(bytes) == 2);
    CHECK(u.in(5) == 0x61);
    CHECK_FALSE(u.irq.level);  // RX interrupt not enabled yet
    u.out(1, 0x01);
    CHECK(u.irq.level);
    CHECK((u.in(2) & 0x0f) == 0x04);
    CHECK(u.in(0) == 'a');
    CHECK(u.irq.level);
    CHECK(u.in(0) == 'b');
    CHECK_FALSE(u.irq.level);
    CHECK(u.in(5) == 0x60);
    CHECK(u.in(0) == 0);  // empty RBR reads 0
}

TEST_CASE("8250: the receive buffer is bounded and never drops silently") {
    Uart u;
    std::vector<uint8_t> lots(Serial8250::kReceiveBufferSize + 100, 'z');
    CHECK(u.serial.receive(lots) == Serial8250::kReceiveBufferSize);
    CHECK(u.serial.receive(lots) == 0);
    u.in(0);
    CHECK(u.serial.receive(lots) == 1);
}

TEST_CASE("8250: loopback mirrors MCR into MSR and THR into RBR (Linux's probe)") {
    Uart u;
    u.out(4, 0x10 | 0x0a);  // LOOP | OUT2 | RTS
    CHECK((u.in(6) & 0xf0) == 0x90);
    u.out(0, 0x55);
    CHECK(u.output.empty());
    CHECK(u.in(5) & 0x01);
    CHECK(u.in(0) == 0x55);
    u.out(4, 0x00);
    CHECK((u.in(6) & 0xf0) == 0xb0);  // DCD, DSR, CTS: a terminal is attached
}

TEST_CASE("8250: divisor latch, scratch, FIFO bits") {
    Uart u;
    u.out(3, 0x83);  // DLAB
    u.out(0, 0x01);
    u.out(1, 0x00);
    CHECK(u.in(0) == 0x01);
    CHECK(u.in(1) == 0x00);
    u.out(3, 0x03);
    u.out(7, 0xa5);
    CHECK(u.in(7) == 0xa5);
    u.out(2, 0x01);  // enable FIFOs
    CHECK((u.in(2) & 0xc0) == 0xc0);
    const uint8_t byte = 'q';
    u.serial.receive(std::span(&byte, 1));
    u.out(2, 0x03);  // clear RX FIFO
    CHECK(u.in(5) == 0x60);
    u.out(5, 0x00);  // LSR is read-only
    CHECK(u.in(5) == 0x60);
}

TEST_CASE("console escape: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A") {
    EscapeFilter filter;
    std::vector<uint8_t> out;
    const uint8_t plain[] = {'l', 's', '\r'};
    CHECK(filter.filter(plain, out) == EscapeFilter::Command::None);
    CHECK(out == std::vector<uint8_t>{'l', 's', '\r'});
    out.clear();
    const uint8_t double_escape[] = {1, 1};
    CHECK(filter.filter(double_escape, out) == EscapeFilter::Command::None);
    CHECK(out == std::vector<uint8_t>{1});
    out.clear();
    const uint8_t other[] = {1, 'c'};
    filter.filter(other, out);
    CHECK(out == std::vector<uint8_t>{1, 'c'});
    out.clear();
    const uint8_t split_first[] = {1};
    const uint8_t split_second[] = {'x'};
    CHECK(filter.filter(split_first, out) == EscapeFilter::Command::None);
    CHECK(filter.filter(split_second, out) == EscapeFilter::Command::Quit);
    CHECK(out.empty());
    const uint8_t help[] = {1, 'h'};
    CHECK(filter.filter(help, out) == EscapeFilter::Command::Help);
}

TEST_CASE("i8042: 0xFE on the command port resets; probes get sane replies") {
    int resets = 0;
    I8042 kbc([&] { ++resets; });
    auto out = [&](uint64_t offset, uint8_t v) { kbc.write(offset, std::span(&v, 1)); };
    auto in = [&](uint64_t offset) {
        uint8_t v = 0;
        kbc.read(offset, std::span(&v, 1));
        return v;
    };
    CHECK((in(4) & 0x03) == 0);  // nothing to read, ready for input
    out(4, 0xaa);
    CHECK(in(4) & 0x01);
    CHECK(in(0) == 0x55);
    out(4, 0x60);
    out(0, 0x47);
    out(4, 0x20);
    CHECK(in(0) == 0x47);
    out(4, 0xd3);  // aux loopback, as Linux probes the mouse port
    out(0, 0x5a);
    CHECK(in(4) & 0x01);
    CHECK(in(0) == 0x5a);
    CHECK((in(4) & 0x01) == 0);
    CHECK(resets == 0);
    out(4, 0xfe);
    CHECK(resets == 1);
    out(4, 0xd1);  // write output port with reset line low
    out(0, 0x00);
    CHECK(resets == 2);
}

TEST_CASE("debug-exit: the value becomes (value << 1) | 1") {
    int value = -1;
    DebugExit port([&](uint8_t v) { value = v; });
    const uint8_t byte = 5;
    port.write(0, std::span(&byte, 1));
    CHECK(value == 5);
    CHECK(debug_exit_status(5) == 11);
    CHECK(debug_exit_status(0) == 1);
    CHECK(debug_exit_status(127) == 255);
    // Every guest-chosen status is odd, every minikvm status even.
    for (int code : {0, 2, 4, 6, 8, 10, 12, 14, 16}) CHECK(code % 2 == 0);
}

TEST_CASE("CMOS RTC reports the clock in BCD and a valid, idle status") {
    std::tm when{};
    when.tm_year = 126;  // 2026
    when.tm_mon = 10;
    when.tm_mday = 22;
    when.tm_hour = 13;
    when.tm_min = 45;
    when.tm_sec = 59;
    std::time_t fixed = timegm(&when);
    CmosRtc rtc([fixed] { return fixed; });
    auto reg = [&](uint8_t index) {
        rtc.write(0, std::span(&index, 1));
        uint8_t v = 0;
        rtc.read(1, std::span(&v, 1));
        return v;
    };
    CHECK(reg(0x00) == 0x59);
    CHECK(reg(0x02) == 0x45);
    CHECK(reg(0x04) == 0x13);
    CHECK(reg(0x07) == 0x22);
    CHECK(reg(0x08) == 0x11);
    CHECK(reg(0x09) == 0x26);
    CHECK(reg(0x32) == 0x20);
    CHECK((reg(0x0a) & 0x80) == 0);  // no update in progress
    CHECK(reg(0x0d) == 0x80);        // valid
    CHECK(reg(0x80 | 0x00) == 0x59); // NMI-mask bit ignored
}

TEST_CASE("ACPI PM1a: SLP_EN with the _S5 type powers off; other writes do not") {
    int power_offs = 0;
    AcpiPm pm([&] { ++power_offs; });
    auto write16 = [&](uint64_t offset, uint16_t value) {
        const uint8_t bytes[2] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
        pm.write(offset, bytes);
    };
    auto read16 = [&](uint64_t offset) {
        uint8_t bytes[2] = {};
        pm.read(offset, bytes);
        return static_cast<uint16_t>(bytes[0] | (bytes[1] << 8));
    };
    CHECK(read16(4) & 1);  // SCI_EN: always in ACPI mode
    write16(4, 5 << 10);   // type without SLP_EN: Linux writes this first
    CHECK(power_offs == 0);
    write16(4, (3 << 10) | (1 << 13));  // S3 is not supported: ignored
    CHECK(power_offs == 0);
    write16(4, (5 << 10) | (1 << 13));
    CHECK(power_offs == 1);
    CHECK((read16(4) & (1 << 13)) == 0);
}

TEST_CASE("pvpanic: reads its events, reports PANICKED and CRASH_LOADED, ignores the rest") {
    std::vector<uint8_t> events;
    PvPanic device([&](uint8_t e) { events.push_back(e); });
    uint8_t value[1] = {0};
    device.read(0, value);
    CHECK(value[0] == (PvPanic::kPanicked | PvPanic::kCrashLoaded));
    const uint8_t panicked[1] = {PvPanic::kPanicked};
    device.write(0, panicked);
    const uint8_t unknown[1] = {0x04};
    device.write(0, unknown);  // not an event it supports: nothing
    const uint8_t both[1] = {0x07};
    device.write(0, both);
    CHECK(events == std::vector<uint8_t>{PvPanic::kPanicked, PvPanic::kPanicked | PvPanic::kCrashLoaded});
}

TEST_CASE("boot-complete marker: only the value 123 counts, at any width") {
    int marks = 0;
    BootCompleteMarker device([&] { ++marks; });
    uint8_t value[1] = {0};
    device.read(0, value);
    CHECK(value[0] == 0xff);
    const uint8_t other[1] = {122};
    device.write(0, other);
    CHECK(marks == 0);
    const uint8_t marker[1] = {BootCompleteMarker::kValue};
    device.write(0, marker);
    const uint8_t wide[2] = {123, 0};
    device.write(0, wide);
    CHECK(marks == 2);
}

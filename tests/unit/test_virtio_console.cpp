// virtio-console: the device alone against real queues in guest RAM, and
// once end to end through the legacy virtio-pci transport.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <cstdint>
#include <string>
#include <vector>

#include "captured_log.h"
#include "recording_signals.h"
#include "ring_driver.h"
#include "test_helpers.h"
#include "virtio_pci_rig.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_pci_legacy.h"
#include "virtio/virtqueue.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/unique_fd.h"

using namespace minikvm;
using Driver = test_helpers::RingDriver;
using test_helpers::RecordingSignals;
using test_helpers::CapturedLog;

namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kRamSize = 16 * kMiB;
constexpr uint32_t kRxPfn = 0x10;
constexpr uint32_t kTxPfn = 0x20;
constexpr uint64_t kData = 2 * kMiB;
constexpr uint16_t kWrite = split_ring::kDescWrite;
constexpr uint16_t kNext = split_ring::kDescNext;
constexpr uint64_t kEventIdx = 1ULL << split_ring::kFeatureEventIdx;
constexpr uint64_t kSizeFeature = 1ULL << VirtioConsole::kFeatureSize;

std::vector<uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

// A console with both queues placed and activated.
struct Rig {
    explicit Rig(uint64_t features = 0, std::optional<VirtioConsole::TerminalSize> size = VirtioConsole::TerminalSize{120, 40})
        : console("virtio-console-test", [this](std::span<const uint8_t> out) { output.append(out.begin(), out.end()); },
                  size) {
        queues.emplace_back(memory, "rx");
        queues.emplace_back(memory, "tx");
        for (VirtQueue& queue : queues) queue.set_features(features);
        REQUIRE(queues[0].configure(kRxPfn, VirtioConsole::kQueueSize));
        REQUIRE(queues[1].configure(kTxPfn, VirtioConsole::kQueueSize));
        console.activate(features, queues, signals);
    }
    ~Rig() { console.reset(); }

    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::vector<VirtQueue> queues;
    RecordingSignals signals;
    std::string output;
    VirtioConsole console;
    Driver rx{memory, kRxPfn, VirtioConsole::kQueueSize};
    Driver tx{memory, kTxPfn, VirtioConsole::kQueueSize};
};

std::string guest_string(const GuestMemory& memory, uint64_t address, size_t length) {
    std::string text(length, '\0');
    REQUIRE(memory.read(address, std::span(reinterpret_cast<uint8_t*>(text.data()), length)));
    return text;
}

}  // namespace

TEST_CASE("virtio-console: identity, features and configuration space", "[virtio-console]") {
    VirtioConsole sized("c", [](std::span<const uint8_t>) {}, VirtioConsole::TerminalSize{132, 43});
    CHECK(sized.device_type() == VirtioDeviceType::Console);
    CHECK(sized.queue_count() == 2);
    CHECK(sized.device_features() ==
          (kSizeFeature | (1ULL << VirtioConsole::kFeatureEmergWrite) | kEventIdx | (1ULL << split_ring::kFeatureIndirectDesc)));
    CHECK(sized.config_size() == 12);

    // Every width at every offset gives the little-endian bytes of the fields.
    const uint8_t expected[12] = {132, 0, 43, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    for (uint32_t width : {1u, 2u, 4u})
        for (uint32_t offset = 0; offset + width <= 12; ++offset) {
            uint8_t data[4] = {0xaa, 0xaa, 0xaa, 0xaa};
            sized.read_config(offset, std::span(data, width));
            for (uint32_t i = 0; i < width; ++i) CHECK(data[i] == expected[offset + i]);
        }

    // Without a known terminal size, F_SIZE is not offered and resizes are ignored.
    VirtioConsole unsized("c", [](std::span<const uint8_t>) {}, std::nullopt);
    CHECK((unsized.device_features() & kSizeFeature) == 0);
}

TEST_CASE("virtio-console: transmitq output reaches the host in chain order, used length 0", "[virtio-console]") {
    Rig rig;
    REQUIRE(rig.memory.write(kData, bytes_of("hello ")));
    REQUIRE(rig.memory.write(kData + 0x1000, bytes_of("world\n")));
    rig.tx.descriptor(0, kData, 6, kNext, 1);
    rig.tx.descriptor(1, kData + 0x1000, 6);
    rig.tx.offer(0);
    rig.console.queue_notified(VirtioConsole::kTransmitQueue);

    CHECK(rig.output == "hello world\n");
    CHECK(rig.tx.used_index() == 1);
    CHECK(rig.tx.used_element(0) == std::pair<uint32_t, uint32_t>{0, 0});
    CHECK(rig.signals.used == 1);
    CHECK(rig.console.bytes_transmitted() == 12);
}

TEST_CASE("virtio-console: output queued before DRIVER_OK is sent at activation", "[virtio-console]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::string output;
    VirtioConsole console("c", [&](std::span<const uint8_t> out) { output.append(out.begin(), out.end()); }, std::nullopt);
    std::vector<VirtQueue> queues;
    queues.emplace_back(memory, "rx");
    queues.emplace_back(memory, "tx");
    REQUIRE(queues[1].configure(kTxPfn, VirtioConsole::kQueueSize));
    Driver tx{memory, kTxPfn, VirtioConsole::kQueueSize};
    REQUIRE(memory.write(kData, bytes_of("early")));
    tx.descriptor(0, kData, 5);
    tx.offer(0);
    RecordingSignals signals;
    console.activate(0, queues, signals);
    CHECK(output == "early");
    console.reset();
}

TEST_CASE("virtio-console: a transmit chain with a writable buffer is completed, counted and logged", "[virtio-console]") {
    Rig rig;
    CapturedLog log;
    REQUIRE(rig.memory.write(kData, bytes_of("secret")));
    rig.tx.descriptor(0, kData, 6, kNext, 1);
    rig.tx.descriptor(1, kData + 0x1000, 16, kWrite);
    rig.tx.offer(0);
    rig.console.queue_notified(VirtioConsole::kTransmitQueue);
    CHECK(rig.output.empty());
    CHECK(rig.tx.used_index() == 1);
    CHECK(rig.tx.used_element(0).second == 0);
    CHECK(rig.console.malformed_requests() == 1);
    CHECK(log.count("warning", "device-writable") == 1);
    CHECK(rig.signals.broken.empty());  // a request error, not a ring-rule one
}

TEST_CASE("virtio-console: input goes only into posted buffers; the rest waits for more", "[virtio-console]") {
    Rig rig;
    const std::vector<uint8_t> input = bytes_of("abcdefghij");
    CHECK(rig.console.receive(input) == 0);  // nothing posted: nothing taken, nothing lost
    CHECK(rig.signals.used == 0);

    rig.rx.descriptor(0, kData, 4, kWrite);
    rig.rx.descriptor(1, kData + 0x100, 4, kWrite);
    rig.rx.offer(0);
    rig.rx.offer(1);
    CHECK(rig.console.receive(input) == 8);
    CHECK(guest_string(rig.memory, kData, 4) == "abcd");
    CHECK(guest_string(rig.memory, kData + 0x100, 4) == "efgh");
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{0, 4});
    CHECK(rig.rx.used_element(1) == std::pair<uint32_t, uint32_t>{1, 4});
    CHECK(rig.signals.used == 1);

    // The driver recycles a buffer; the remaining two bytes go into it.
    rig.rx.descriptor(2, kData + 0x200, 64, kWrite);
    rig.rx.offer(2);
    CHECK(rig.console.receive(std::span(input).subspan(8)) == 2);
    CHECK(guest_string(rig.memory, kData + 0x200, 2) == "ij");
    CHECK(rig.rx.used_element(2) == std::pair<uint32_t, uint32_t>{2, 2});
    CHECK(rig.console.bytes_received() == 10);
}

TEST_CASE("virtio-console: a receive chain without a writable buffer takes no input", "[virtio-console]") {
    Rig rig;
    CapturedLog log;
    rig.rx.descriptor(0, kData, 8);  // device-readable: useless for input
    rig.rx.descriptor(1, kData + 0x100, 8, kWrite);
    rig.rx.offer(0);
    rig.rx.offer(1);
    CHECK(rig.console.receive(bytes_of("xy")) == 2);
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{0, 0});
    CHECK(rig.rx.used_element(1) == std::pair<uint32_t, uint32_t>{1, 2});
    CHECK(rig.console.malformed_requests() == 1);
    CHECK(log.count("warning", "no device-writable buffer") == 1);
}

TEST_CASE("virtio-console: EVENT_IDX suppresses the interrupt until used_event is passed", "[virtio-console]") {
    Rig rig(kEventIdx);
    rig.tx.set_used_event(1);  // "interrupt me after the second buffer"
    REQUIRE(rig.memory.write(kData, bytes_of("ab")));
    rig.tx.descriptor(0, kData, 1);
    rig.tx.offer(0);
    rig.console.queue_notified(VirtioConsole::kTransmitQueue);
    CHECK(rig.signals.used == 0);
    rig.tx.descriptor(1, kData + 1, 1);
    rig.tx.offer(1);
    rig.console.queue_notified(VirtioConsole::kTransmitQueue);
    CHECK(rig.signals.used == 1);
    CHECK(rig.output == "ab");
    CHECK(rig.tx.avail_event() == 2);  // and asks to be kicked for the next one
}

TEST_CASE("virtio-console: a ring-rule violation is reported to the transport", "[virtio-console]") {
    Rig rig;
    CapturedLog log;
    rig.tx.descriptor(0, kData, 4, kNext, 0);  // a chain that points at itself
    rig.tx.offer(0);
    rig.console.queue_notified(VirtioConsole::kTransmitQueue);
    REQUIRE(rig.signals.broken.size() == 1);
    CHECK(rig.signals.broken[0].find("2.7.5.2") != std::string::npos);
    CHECK(rig.output.empty());
}

TEST_CASE("virtio-console: terminal resize raises a config change only when F_SIZE was negotiated", "[virtio-console]") {
    Rig negotiated(kSizeFeature);
    negotiated.console.set_size({100, 30});
    CHECK(negotiated.signals.config == 1);
    uint8_t cols[2] = {};
    negotiated.console.read_config(VirtioConsole::kConfigCols, cols);
    CHECK(test_helpers::from_le(cols) == 100);
    negotiated.console.set_size({100, 30});  // unchanged: no interrupt
    CHECK(negotiated.signals.config == 1);

    Rig not_negotiated(0);
    not_negotiated.console.set_size({100, 30});
    CHECK(not_negotiated.signals.config == 0);
}

TEST_CASE("virtio-console: emergency write outputs one byte; other config writes are ignored", "[virtio-console]") {
    std::string output;
    VirtioConsole console("c", [&](std::span<const uint8_t> out) { output.append(out.begin(), out.end()); }, std::nullopt);
    const uint8_t dword[4] = {'X', 'y', 'z', 'w'};
    console.write_config(VirtioConsole::kConfigEmergWrite, dword);
    const uint8_t straddling[2] = {'?', 'Q'};  // bytes 7 and 8: byte 8 is the character
    console.write_config(VirtioConsole::kConfigEmergWrite - 1, straddling);
    CHECK(output == "XQ");
    CapturedLog log;
    const uint8_t cols[2] = {1, 2};
    console.write_config(VirtioConsole::kConfigCols, cols);
    CHECK(output == "XQ");
    CHECK(console.malformed_requests() == 1);
}

TEST_CASE("virtio-console: after reset no input is taken and kicks do nothing", "[virtio-console]") {
    Rig rig;
    rig.rx.descriptor(0, kData, 4, kWrite);
    rig.rx.offer(0);
    rig.console.reset();
    CHECK(rig.console.receive(bytes_of("a")) == 0);
    rig.console.queue_notified(VirtioConsole::kTransmitQueue);
    CHECK(rig.rx.used_index() == 0);
}

TEST_CASE("virtio-console: end to end through the legacy virtio-pci transport", "[virtio-console]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::string output;
    VirtioConsole console("c", [&](std::span<const uint8_t> out) { output.append(out.begin(), out.end()); }, std::nullopt);
    test_helpers::FakeIrq irq;  // outlives the transport, which lowers it when it resets
    VirtioPciLegacy transport(console, memory, "virtio-console-test");
    transport.connect_intx(irq);
    auto write = [&](uint32_t offset, uint32_t width, uint32_t value) {
        virtio_pci_rig::reg_write(transport, offset, width, value);
    };
    auto read = [&](uint32_t offset, uint32_t width) { return virtio_pci_rig::reg_read(transport, offset, width); };

    // The legacy driver's sequence: reset, ACKNOWLEDGE, DRIVER, features,
    // queues (select, size, PFN), DRIVER_OK.
    write(VirtioPciLegacy::kStatus, 1, 0);
    write(VirtioPciLegacy::kStatus, 1, 1);
    write(VirtioPciLegacy::kStatus, 1, 3);
    CHECK(read(VirtioPciLegacy::kHostFeatures, 4) == static_cast<uint32_t>(console.device_features()));
    write(VirtioPciLegacy::kGuestFeatures, 4, 0);
    for (uint32_t queue : {0u, 1u}) {
        write(VirtioPciLegacy::kQueueSelect, 2, queue);
        CHECK(read(VirtioPciLegacy::kQueueSize, 2) == VirtioConsole::kQueueSize);
        write(VirtioPciLegacy::kQueuePfn, 4, queue == 0 ? kRxPfn : kTxPfn);
    }
    write(VirtioPciLegacy::kStatus, 1, 7);

    Driver tx{memory, kTxPfn, VirtioConsole::kQueueSize};
    REQUIRE(memory.write(kData, bytes_of("hvc0 says hi")));
    tx.descriptor(0, kData, 12);
    tx.offer(0);
    write(VirtioPciLegacy::kQueueNotify, 2, VirtioConsole::kTransmitQueue);
    CHECK(output == "hvc0 says hi");
    CHECK(irq.level);
    CHECK(read(VirtioPciLegacy::kIsr, 1) == VirtioPciLegacy::kIsrQueue);
    CHECK_FALSE(irq.level);

    Driver rx{memory, kRxPfn, VirtioConsole::kQueueSize};
    rx.descriptor(0, kData + 0x100, 16, kWrite);
    rx.offer(0);
    const std::vector<uint8_t> typed = bytes_of("ls\n");
    CHECK(console.receive(typed) == 3);
    CHECK(guest_string(memory, kData + 0x100, 3) == "ls\n");
    CHECK(irq.level);
}

TEST_CASE("virtio-console: polled, output the driver did not kick for is sent, and notifications come back",
          "[virtio-console][polling]") {
    // A fixed 50 ms window: every phase outlasts the driver's next write,
    // however busy the machine.
    EventLoop loop(std::chrono::milliseconds(50), EventLoop::PollWindow::Fixed);
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::vector<VirtQueue> queues;
    queues.emplace_back(memory, "rx");
    queues.emplace_back(memory, "tx");
    REQUIRE(queues[0].configure(kRxPfn, VirtioConsole::kQueueSize));
    REQUIRE(queues[1].configure(kTxPfn, VirtioConsole::kQueueSize));
    RecordingSignals signals;
    std::mutex output_mutex;
    std::string output;
    VirtioConsole console(
        "virtio-console-poll",
        [&](std::span<const uint8_t> out) {
            std::lock_guard lock(output_mutex);
            output.append(out.begin(), out.end());
        },
        std::nullopt, &loop);
    {
        std::lock_guard lock(console.device_lock());
        console.activate(0, queues, signals);
    }
    UniqueFd kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    loop.watch(kick.get(), EventSources::kReadable, [&](uint32_t) {
        uint64_t count = 0;
        [[maybe_unused]] ssize_t n = ::read(kick.get(), &count, sizeof count);
        std::lock_guard lock(console.device_lock());
        console.queue_notified(VirtioConsole::kTransmitQueue);
    });
    Driver tx{memory, kTxPfn, VirtioConsole::kQueueSize};
    std::string expected;
    int kicks = 0;
    constexpr int kWrites = 300;
    for (int i = 0; i < kWrites; ++i) {
        const std::string text = fmt::format("<{}>", i);
        expected += text;
        const uint64_t address = kData + 64 * uint64_t(i % 128);
        REQUIRE(memory.write(address, bytes_of(text)));
        tx.descriptor(i % 128, address, static_cast<uint32_t>(text.size()));
        tx.offer(static_cast<uint16_t>(i % 128));
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if ((tx.used_flags() & split_ring::kUsedNoNotify) == 0) {
            const uint64_t one = 1;
            REQUIRE(::write(kick.get(), &one, sizeof one) == sizeof one);
            ++kicks;
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (tx.used_index() != static_cast<uint16_t>(i + 1) && std::chrono::steady_clock::now() < deadline) {
        }
        INFO("write " << i << ", " << kicks << " kicks");
        REQUIRE(tx.used_index() == static_cast<uint16_t>(i + 1));
    }
    {
        std::lock_guard lock(output_mutex);
        CHECK(output == expected);
    }
    CHECK(kicks < 10);  // the first, and any after a phase ran out
    // Idle: the phase ends within the window and notifications are back on.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (tx.used_flags() != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(tx.used_flags() == 0);
    loop.unwatch(kick.get());
    std::lock_guard lock(console.device_lock());
    console.reset();
}

// The split-virtqueue engine against a real GuestMemory, with a small driver
// that lays out and fills legacy rings the way a guest's virtio_ring does.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "captured_log.h"
#include "ring_driver.h"
#include "virtio/descriptor_chain.h"
#include "virtio/split_ring.h"
#include "virtio/virtqueue.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;
namespace sr = minikvm::split_ring;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kRamSize = 16 * kMiB;
constexpr uint32_t kRingPfn = 0x10;       // the ring at 64 KiB
constexpr uint64_t kData = 2 * kMiB;      // buffers from here on
constexpr uint64_t kTable = 3 * kMiB;     // indirect tables here
constexpr uint64_t kIndirect = 1ULL << sr::kFeatureIndirectDesc;
constexpr uint64_t kEventIdx = 1ULL << sr::kFeatureEventIdx;
constexpr uint16_t kNext = sr::kDescNext;
constexpr uint16_t kWrite = sr::kDescWrite;
constexpr uint16_t kIndirectFlag = sr::kDescIndirect;

using test_helpers::get_le;
using test_helpers::put_descriptor;
using test_helpers::put_le;
using Driver = test_helpers::RingDriver;
using LogCapture = test_helpers::CapturedLog;

struct Fixture {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtQueue queue;
    Driver driver;

    explicit Fixture(uint32_t size = 8, uint64_t features = 0, VirtQueueOptions options = {})
        : queue(memory, "test-q0", options), driver{memory, kRingPfn, size} {
        queue.set_features(features);
        REQUIRE(queue.configure(kRingPfn, size));
    }
};

// The next pop() must break the queue with `error`, citing `clause` in its
// reason and in exactly one error log line; after that the queue is silent.
void require_breaks(VirtQueue& queue, VirtQueueError error, const std::string& clause) {
    const uint64_t errors = queue.error_count();
    LogCapture log;
    CHECK_FALSE(queue.pop());
    REQUIRE(queue.broken());
    CHECK(queue.error() == error);
    CHECK_THAT(queue.broken_reason(), StartsWith("virtio 1.2 " + clause + ": "));
    CHECK(queue.error_count() == errors + 1);
    CHECK_FALSE(queue.pop());
    CHECK_FALSE(queue.has_available());
    CHECK_FALSE(queue.push(0, 0));
    CHECK_FALSE(queue.needs_interrupt());
    const auto lines = log.lines();
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Contains("[error]") && Contains("test-q0") && Contains(queue.broken_reason()));
}

}  // namespace

// --- ring format --------------------------------------------------------------------------------

TEST_CASE("split ring: legacy layout of the smallest, a common and the largest queue", "[virtqueue]") {
    constexpr auto one = sr::legacy_layout(1);
    STATIC_REQUIRE(one.avail == 16);
    STATIC_REQUIRE(one.used == 4096);
    STATIC_REQUIRE(one.end == 4096 + 6 + 8);
    constexpr auto common = sr::legacy_layout(256);
    STATIC_REQUIRE(common.avail == 4096);
    STATIC_REQUIRE(common.avail_size == 6 + 512);
    STATIC_REQUIRE(common.used == 8192);
    STATIC_REQUIRE(common.end == 8192 + 6 + 2048);
    constexpr auto largest = sr::legacy_layout(32768);
    STATIC_REQUIRE(largest.descriptors_size == 512 * 1024);
    STATIC_REQUIRE(largest.used == 593920);  // 512 KiB + 65542 rounded up to a page
    STATIC_REQUIRE(largest.end == 593920 + 6 + 8 * 32768);
    STATIC_REQUIRE(sr::avail_used_event_offset(256) == 4 + 512);
    STATIC_REQUIRE(sr::used_avail_event_offset(256) == 4 + 2048);

    STATIC_REQUIRE_FALSE(sr::valid_queue_size(0));
    STATIC_REQUIRE(sr::valid_queue_size(1));
    STATIC_REQUIRE_FALSE(sr::valid_queue_size(3));
    STATIC_REQUIRE(sr::valid_queue_size(32768));
    STATIC_REQUIRE_FALSE(sr::valid_queue_size(65536));
    // Device-readable buffers cannot be written through the chain's spans.
    STATIC_REQUIRE(std::is_same_v<decltype(ReadableBuffer::bytes), std::span<const uint8_t>>);
}

TEST_CASE("split ring: need_event in u16 arithmetic, across the 65535 -> 0 wrap", "[virtqueue]") {
    STATIC_REQUIRE(sr::need_event(0, 1, 0));       // first entry written: used_event 0 fires
    STATIC_REQUIRE_FALSE(sr::need_event(1, 1, 0));  // entry 1 not written yet
    STATIC_REQUIRE(sr::need_event(5, 10, 0));       // a batch that covers the event
    STATIC_REQUIRE_FALSE(sr::need_event(10, 10, 0));
    STATIC_REQUIRE_FALSE(sr::need_event(3, 7, 7));  // nothing new
    STATIC_REQUIRE(sr::need_event(65535, 0, 65535));  // entry 65535 written, index wrapped
    STATIC_REQUIRE(sr::need_event(65535, 2, 65534));
    STATIC_REQUIRE(sr::need_event(0, 1, 65535));
    STATIC_REQUIRE_FALSE(sr::need_event(1, 1, 65535));
    STATIC_REQUIRE_FALSE(sr::need_event(65533, 3, 65534));  // already passed before this batch
}

// --- configuration ------------------------------------------------------------------------------

TEST_CASE("virtqueue: configure takes power-of-two sizes up to 32768 only", "[virtqueue]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtQueue queue(memory, "test-q0");
    for (uint32_t size : {1u, 2u, 256u, 32768u}) {
        CHECK(queue.configure(kRingPfn, size));
        CHECK(queue.ready());
        CHECK(queue.size() == size);
        CHECK(queue.guest_address() == uint64_t{kRingPfn} * 4096);
    }
    LogCapture log;
    for (uint32_t size : {0u, 3u, 100u, 32769u, 65536u}) {
        CHECK_FALSE(queue.configure(kRingPfn, size));
        CHECK_FALSE(queue.ready());
        CHECK(queue.error() == VirtQueueError::BadQueueSize);
        CHECK_THAT(queue.broken_reason(), StartsWith("virtio 1.2 2.7: "));
    }
    CHECK(queue.error_count() == 5);
    CHECK(log.lines().size() == 5);
}

TEST_CASE("virtqueue: a ring not entirely in guest RAM is rejected, the last one that fits is taken", "[virtqueue]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtQueue queue(memory, "test-q0");
    const auto layout = sr::legacy_layout(256);
    const uint32_t last_pfn = static_cast<uint32_t>((kRamSize - layout.end) / 4096);
    CHECK(queue.configure(last_pfn, 256));

    LogCapture log;
    for (uint32_t pfn : {last_pfn + 1, static_cast<uint32_t>(kRamSize / 4096), 0xffff'ffffu}) {
        CHECK_FALSE(queue.configure(pfn, 256));
        CHECK_FALSE(queue.ready());
        CHECK(queue.error() == VirtQueueError::RingOutsideRam);
        CHECK_THAT(queue.broken_reason(), StartsWith("virtio 1.2 2.7.2: "));
        CHECK_FALSE(queue.pop());
    }
    CHECK(log.lines().size() == 3);
    // The largest ring needs 836 KiB: it does not fit 64 KiB below the end.
    CHECK_FALSE(queue.configure(static_cast<uint32_t>(kRamSize / 4096 - 16), 32768));
    CHECK(queue.configure(0, 32768));
}

TEST_CASE("virtqueue: an unconfigured queue and an empty ring give nothing", "[virtqueue]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtQueue queue(memory, "test-q0");
    CHECK_FALSE(queue.pop());
    CHECK_FALSE(queue.push(0, 0));
    CHECK_FALSE(queue.needs_interrupt());
    CHECK_FALSE(queue.enable_notifications());
    CHECK_FALSE(queue.broken());

    Fixture f;
    CHECK_FALSE(f.queue.pop());
    CHECK_FALSE(f.queue.has_available());
    CHECK_FALSE(f.queue.broken());
    CHECK(f.queue.error_count() == 0);
}

// --- valid chains -------------------------------------------------------------------------------

TEST_CASE("virtqueue: a chain gives readable then writable buffers, and push returns it", "[virtqueue]") {
    Fixture f;
    const std::string request = "hello, device";
    REQUIRE(f.memory.write(kData, std::span(reinterpret_cast<const uint8_t*>(request.data()), request.size())));
    f.driver.descriptor(5, kData, 5, kNext, 2);
    f.driver.descriptor(2, kData + 5, static_cast<uint32_t>(request.size() - 5), kNext, 7);
    f.driver.descriptor(7, kData + 0x1000, 512, kWrite);
    f.driver.offer(5);

    CHECK(f.queue.has_available());
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->head == 5);
    REQUIRE(chain->readable.size() == 2);
    REQUIRE(chain->writable.size() == 1);
    CHECK(chain->readable_length == request.size());
    CHECK(chain->writable_length == 512);
    CHECK(chain->readable[1].guest_address == kData + 5);
    CHECK(chain->readable[0].bytes.data() == f.memory.span(kData, 1)->data());
    CHECK(chain->writable[0].bytes.data() == f.memory.span(kData + 0x1000, 1)->data());
    CHECK(chain->writable[0].bytes.size() == 512);
    CHECK(f.queue.in_flight() == 1);
    CHECK(f.queue.next_avail_index() == 1);
    CHECK_FALSE(f.queue.pop());

    // The device reads the request as one stream and answers into the writable buffer.
    std::string seen(request.size(), '\0');
    CHECK(chain->read(0, std::span(reinterpret_cast<uint8_t*>(seen.data()), seen.size())) == request.size());
    CHECK(seen == request);
    const uint8_t status[2] = {0xaa, 0x55};
    CHECK(chain->write(0, status) == 2);
    CHECK(get_le(f.memory, kData + 0x1000, 2) == 0x55aa);

    CHECK(f.queue.push(chain->head, 2));
    CHECK(f.driver.used_index() == 1);
    CHECK(f.driver.used_element(0) == std::pair<uint32_t, uint32_t>{5, 2});
    CHECK(f.queue.in_flight() == 0);
    CHECK(f.queue.needs_interrupt());
    CHECK_FALSE(f.queue.needs_interrupt());  // nothing used since
}

TEST_CASE("DescriptorChain: read and write see the buffers as one stream", "[virtqueue]") {
    Fixture f;
    for (uint8_t i = 0; i < 10; ++i) put_le(f.memory, kData + i, i, 1);
    f.driver.descriptor(0, kData, 3, kNext, 1);           // bytes 0..2
    f.driver.descriptor(1, kData + 3, 0, kNext, 2);       // empty
    f.driver.descriptor(2, kData + 3, 7, kNext, 3);       // bytes 3..9
    f.driver.descriptor(3, kData + 0x100, 4, kWrite | kNext, 4);
    f.driver.descriptor(4, kData + 0x200, 4, kWrite);
    f.driver.offer(0);
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->readable.size() == 3);

    uint8_t out[6] = {};
    CHECK(chain->read(1, out) == 6);  // crosses the empty buffer
    CHECK(std::vector<uint8_t>(out, out + 6) == std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
    CHECK(chain->read(8, out) == 2);  // runs off the end
    CHECK(out[1] == 9);
    CHECK(chain->read(10, out) == 0);

    const uint8_t data[6] = {10, 11, 12, 13, 14, 15};
    CHECK(chain->write(2, data) == 6);  // 2 into the first, 4 into the second
    CHECK(get_le(f.memory, kData + 0x102, 2) == 0x0b0a);
    CHECK(get_le(f.memory, kData + 0x200, 4) == 0x0f0e0d0c);
    CHECK(chain->write(7, data) == 1);
    CHECK(chain->write(8, data) == 0);
}

TEST_CASE("virtqueue: the largest queue takes a chain of exactly 32768 descriptors", "[virtqueue]") {
    Fixture f(32768);
    for (uint32_t i = 0; i < 32768; ++i) {
        const bool last = i == 32767;
        f.driver.descriptor(i, kData + i, 1, last ? kWrite : kWrite | kNext, static_cast<uint16_t>(i + 1));
    }
    f.driver.offer(0);
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->writable.size() == 32768);
    CHECK(chain->writable_length == 32768);
    CHECK(chain->writable.back().guest_address == kData + 32767);
    CHECK_FALSE(f.queue.broken());
}

TEST_CASE("virtqueue: a buffer may end at the last byte of RAM; a zero-length one may point anywhere",
          "[virtqueue]") {
    Fixture f;
    f.driver.descriptor(0, kRamSize - 16, 16, kNext, 1);
    f.driver.descriptor(1, 0xffff'ffff'ffff'ff00, 0, kWrite);  // empty: nothing to reach
    f.driver.offer(0);
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->readable[0].bytes.data() + 15 == f.memory.span(kRamSize - 1, 1)->data());
    CHECK(chain->writable[0].bytes.empty());
}

TEST_CASE("virtqueue: a chain of exactly 2^32 - 1 bytes is fine", "[virtqueue]") {
    // Buffers may overlap, so 256 descriptors over all 16 MiB of RAM add up.
    Fixture f(512);
    for (uint32_t i = 0; i < 256; ++i) {
        const bool last = i == 255;
        f.driver.descriptor(i, 0, last ? static_cast<uint32_t>(kRamSize - 1) : static_cast<uint32_t>(kRamSize),
                            last ? 0 : kNext, static_cast<uint16_t>(i + 1));
    }
    f.driver.offer(0);
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->readable_length == 0xffff'ffffu);
}

TEST_CASE("virtqueue: the available index may run exactly the queue size ahead", "[virtqueue]") {
    Fixture f(4);
    for (uint16_t i = 0; i < 4; ++i) {
        f.driver.descriptor(i, kData, 1);
        f.driver.offer(static_cast<uint16_t>(3 - i));
    }
    for (uint16_t i = 0; i < 4; ++i) {
        auto chain = f.queue.pop();
        REQUIRE(chain);
        CHECK(chain->head == 3 - i);
    }
    CHECK_FALSE(f.queue.pop());
    CHECK(f.queue.in_flight() == 4);
}

TEST_CASE("virtqueue: available and used indices wrap from 65535 to 0", "[virtqueue]") {
    Fixture f(4);
    for (uint16_t i = 0; i < 4; ++i) f.driver.descriptor(i, kData + i, 1, kWrite);
    uint32_t total = 0;
    auto round = [&] {
        for (uint16_t i = 0; i < 4; ++i) f.driver.offer(i);
        for (uint16_t i = 0; i < 4; ++i) {
            auto chain = f.queue.pop();
            REQUIRE(chain);
            REQUIRE(chain->head == i);
            REQUIRE(f.queue.push(chain->head, total + i));
        }
        total += 4;
    };
    while (total < 65536) round();
    CHECK(f.queue.next_avail_index() == 0);
    CHECK(f.queue.used_index() == 0);
    CHECK(f.driver.used_index() == 0);
    CHECK(f.driver.used_element(65535) == std::pair<uint32_t, uint32_t>{3, 65535});
    round();  // across the wrap
    CHECK(f.queue.next_avail_index() == 4);
    CHECK(f.driver.used_index() == 4);
    CHECK(f.driver.used_element(3) == std::pair<uint32_t, uint32_t>{3, 65536 + 3});
    CHECK_FALSE(f.queue.broken());
}

// --- interrupt and notification suppression -----------------------------------------------------

TEST_CASE("virtqueue: VRING_AVAIL_F_NO_INTERRUPT suppresses interrupts without EVENT_IDX", "[virtqueue]") {
    Fixture f;
    f.driver.descriptor(0, kData, 1, kWrite);
    f.driver.descriptor(1, kData, 1, kWrite);
    f.driver.offer(0);
    f.driver.offer(1);
    f.driver.set_used_event(5);  // ignored without EVENT_IDX

    auto use_one = [&] {
        auto chain = f.queue.pop();
        REQUIRE(chain);
        REQUIRE(f.queue.push(chain->head, 0));
    };
    f.driver.set_avail_flags(sr::kAvailNoInterrupt);
    use_one();
    CHECK_FALSE(f.queue.needs_interrupt());

    f.driver.set_avail_flags(0);
    use_one();
    CHECK(f.queue.needs_interrupt());
}

TEST_CASE("virtqueue: with EVENT_IDX an interrupt is due when the used index passes used_event, across the wrap",
          "[virtqueue]") {
    Fixture f(8, kEventIdx);
    f.driver.descriptor(0, kData, 1, kWrite);
    auto use_one = [&] {
        f.driver.offer(0);
        auto chain = f.queue.pop();
        REQUIRE(chain);
        REQUIRE(f.queue.push(chain->head, 1));
    };
    // Bring the indices up to 65532, keeping needs_interrupt() current.
    while (f.queue.used_index() != 65532) {
        use_one();
        f.queue.needs_interrupt();
    }
    f.driver.set_avail_flags(sr::kAvailNoInterrupt);  // the flag means nothing with EVENT_IDX
    f.driver.set_used_event(65534);
    use_one();  // entry 65532
    CHECK_FALSE(f.queue.needs_interrupt());
    use_one();  // entry 65533
    CHECK_FALSE(f.queue.needs_interrupt());
    f.driver.set_avail_flags(0);
    use_one();  // entry 65534 == used_event
    CHECK(f.queue.needs_interrupt());

    f.driver.set_used_event(0);
    use_one();  // entry 65535, the index wraps to 0
    CHECK(f.queue.used_index() == 0);
    CHECK_FALSE(f.queue.needs_interrupt());
    use_one();  // entry 0
    CHECK(f.queue.needs_interrupt());

    // A batch that covers used_event somewhere in the middle.
    f.driver.set_used_event(2);
    use_one();
    use_one();
    use_one();
    CHECK(f.queue.needs_interrupt());
    // used_event already behind: no interrupt until it comes round again.
    use_one();
    CHECK_FALSE(f.queue.needs_interrupt());
}

TEST_CASE("virtqueue: notification suppression with VRING_USED_F_NO_NOTIFY", "[virtqueue]") {
    Fixture f;
    CHECK(f.driver.used_flags() == 0);
    f.queue.disable_notifications();
    CHECK_FALSE(f.queue.notifications_enabled());
    CHECK(f.driver.used_flags() == sr::kUsedNoNotify);
    CHECK_FALSE(f.queue.enable_notifications());  // nothing pending
    CHECK(f.driver.used_flags() == 0);

    // Buffers added while notifications were off: enable says so.
    f.queue.disable_notifications();
    f.driver.descriptor(0, kData, 1);
    f.driver.offer(0);
    CHECK(f.queue.enable_notifications());
    CHECK(f.driver.avail_event() == 0);  // untouched without EVENT_IDX
}

TEST_CASE("virtqueue: with EVENT_IDX, notification suppression goes through avail_event", "[virtqueue]") {
    Fixture f(8, kEventIdx);
    f.driver.descriptor(0, kData, 1);
    f.driver.offer(0);
    f.driver.offer(0);
    REQUIRE(f.queue.pop());
    CHECK(f.driver.avail_event() == 1);  // kick me when entry 1 is made available
    f.queue.disable_notifications();
    CHECK(f.driver.used_flags() == 0);  // the flag stays 0 with EVENT_IDX
    REQUIRE(f.queue.pop());
    CHECK(f.driver.avail_event() == 1);  // no longer moving
    CHECK_FALSE(f.queue.enable_notifications());
    CHECK(f.driver.avail_event() == 2);
    f.queue.disable_notifications();
    f.driver.offer(0);
    CHECK(f.queue.enable_notifications());  // already there: process it now
    CHECK(f.driver.used_flags() == 0);
}

// --- broken ring rules: each breaks the queue with its clause -----------------------------------

TEST_CASE("virtqueue: a head outside the descriptor table breaks the queue", "[virtqueue]") {
    Fixture f;
    f.driver.offer(8);
    require_breaks(f.queue, VirtQueueError::HeadOutOfRange, "2.7.5");
    CHECK_THAT(f.queue.broken_reason(), Contains("head 8"));
}

TEST_CASE("virtqueue: a next outside the descriptor table breaks the queue", "[virtqueue]") {
    Fixture f;
    f.driver.descriptor(0, kData, 1, kNext, 8);
    f.driver.offer(0);
    require_breaks(f.queue, VirtQueueError::NextOutOfRange, "2.7.5");
    CHECK_THAT(f.queue.broken_reason(), Contains("next 8"));
}

TEST_CASE("virtqueue: a loop in the chain breaks the queue", "[virtqueue]") {
    Fixture f;
    SECTION("two descriptors pointing at each other") {
        f.driver.descriptor(0, kData, 1, kNext, 1);
        f.driver.descriptor(1, kData, 1, kNext, 0);
    }
    SECTION("the whole table, and back to the start") {
        for (uint16_t i = 0; i < 8; ++i) f.driver.descriptor(i, kData, 1, kNext, static_cast<uint16_t>((i + 1) % 8));
    }
    SECTION("a descriptor pointing at itself") {
        f.driver.descriptor(0, kData, 1, kNext, 0);
    }
    f.driver.offer(0);
    require_breaks(f.queue, VirtQueueError::ChainLoop, "2.7.5.2");
}

TEST_CASE("virtqueue: a chain of 2^32 bytes or more breaks the queue", "[virtqueue]") {
    Fixture f(512);
    for (uint32_t i = 0; i < 256; ++i)
        f.driver.descriptor(i, 0, static_cast<uint32_t>(kRamSize), i == 255 ? 0 : kNext, static_cast<uint16_t>(i + 1));
    f.driver.offer(0);
    require_breaks(f.queue, VirtQueueError::ChainTooLong, "2.7.5.2");
    CHECK_THAT(f.queue.broken_reason(), Contains("4294967296 bytes"));
}

TEST_CASE("virtqueue: a buffer not entirely in guest RAM breaks the queue", "[virtqueue]") {
    Fixture f;
    SECTION("one byte past the end") { f.driver.descriptor(0, kRamSize - 16, 17); }
    SECTION("starting past the end") { f.driver.descriptor(0, kRamSize, 1); }
    SECTION("address + length wraps 2^64") { f.driver.descriptor(0, 0xffff'ffff'ffff'f000, 0x2000); }
    SECTION("a writable buffer later in the chain") {
        f.driver.descriptor(0, kData, 16, kNext, 1);
        f.driver.descriptor(1, 0x1'0000'0000, 16, kWrite);
    }
    f.driver.offer(0);
    require_breaks(f.queue, VirtQueueError::BufferOutsideRam, "2.7.5");
}

TEST_CASE("virtqueue: a device-readable buffer after a device-writable one", "[virtqueue]") {
    SECTION("breaks the queue by default") {
        Fixture f;
        f.driver.descriptor(0, kData, 4, kWrite | kNext, 1);
        f.driver.descriptor(1, kData + 4, 4);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::ReadableAfterWritable, "2.7.4.2");
    }
    SECTION("is accepted by a lenient device") {
        Fixture f(8, 0, VirtQueueOptions{.require_readable_before_writable = false});
        f.driver.descriptor(0, kData, 4, kWrite | kNext, 1);
        f.driver.descriptor(1, kData + 4, 4);
        f.driver.offer(0);
        auto chain = f.queue.pop();
        REQUIRE(chain);
        CHECK(chain->readable.size() == 1);
        CHECK(chain->writable.size() == 1);
    }
}

TEST_CASE("virtqueue: an available index more than the queue size ahead breaks the queue", "[virtqueue]") {
    Fixture f(4);
    f.driver.descriptor(0, kData, 1);
    SECTION("from the start") { f.driver.set_avail_index(5); }
    SECTION("after some were taken") {
        f.driver.offer(0);
        f.driver.offer(0);
        REQUIRE(f.queue.pop());
        f.driver.set_avail_index(6);  // 5 past the next entry to take
    }
    require_breaks(f.queue, VirtQueueError::AvailIndexTooFar, "2.7.6");
}

TEST_CASE("virtqueue: an available index moving backwards breaks the queue", "[virtqueue]") {
    Fixture f(4);
    f.driver.descriptor(0, kData, 1);
    f.driver.offer(0);
    f.driver.offer(0);
    f.driver.offer(0);
    REQUIRE(f.queue.pop());  // sees 3
    SECTION("still ahead of the device") { f.driver.set_avail_index(2); }
    SECTION("behind the device") { f.driver.set_avail_index(0); }
    require_breaks(f.queue, VirtQueueError::AvailIndexBackwards, "2.7.6.1");
    CHECK_THAT(f.queue.broken_reason(), Contains("from 3 to"));
}

// --- indirect descriptors -----------------------------------------------------------------------

TEST_CASE("virtqueue: indirect tables, alone or after direct descriptors", "[virtqueue]") {
    Fixture f(4, kIndirect);
    // Direct readable header, then a table of readable, writable, writable.
    // The WRITE flag on the descriptor that points at the table means nothing.
    f.driver.descriptor(1, kData, 8, kNext, 3);
    f.driver.descriptor(3, kTable, 3 * 16, kIndirectFlag | kWrite);
    put_descriptor(f.memory, kTable + 0, kData + 0x100, 16, kNext, 2);
    put_descriptor(f.memory, kTable + 32, kData + 0x200, 32, kWrite | kNext, 1);
    put_descriptor(f.memory, kTable + 16, kData + 0x300, 1, kWrite, 0);
    f.driver.offer(1);
    // A table alone, ending at the last byte of RAM, with one entry.
    f.driver.descriptor(2, kRamSize - 16, 16, kIndirectFlag);
    put_descriptor(f.memory, kRamSize - 16, kData, 64, kWrite, 0);
    f.driver.offer(2);

    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->head == 1);
    REQUIRE(chain->readable.size() == 2);
    REQUIRE(chain->writable.size() == 2);
    CHECK(chain->readable[1].guest_address == kData + 0x100);
    CHECK(chain->writable[0].guest_address == kData + 0x200);
    CHECK(chain->writable[1].guest_address == kData + 0x300);
    CHECK(chain->readable_length == 24);
    CHECK(chain->writable_length == 33);

    chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->readable.empty());
    REQUIRE(chain->writable.size() == 1);
    CHECK(chain->writable_length == 64);
    CHECK(f.queue.push(1, 33));
    CHECK(f.queue.push(2, 64));
    CHECK(f.driver.used_element(1) == std::pair<uint32_t, uint32_t>{2, 64});
}

TEST_CASE("virtqueue: an indirect table may hold up to the queue size descriptors in its chain", "[virtqueue]") {
    Fixture f(4, kIndirect);
    f.driver.descriptor(0, kTable, 64 * 16, kIndirectFlag);  // a big table, a 4-long chain
    for (uint16_t i = 0; i < 4; ++i)
        put_descriptor(f.memory, kTable + 16 * i, kData, 1, i == 3 ? 0 : kNext, static_cast<uint16_t>(i + 1));
    f.driver.offer(0);
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->readable.size() == 4);
}

TEST_CASE("virtqueue: each invalid indirect shape breaks the queue", "[virtqueue]") {
    SECTION("INDIRECT without VIRTIO_RING_F_INDIRECT_DESC") {
        Fixture f(4);
        f.driver.descriptor(0, kTable, 16, kIndirectFlag);
        put_descriptor(f.memory, kTable, kData, 1, 0, 0);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectNotNegotiated, "2.7.5.3.1");
    }
    Fixture f(4, kIndirect);
    SECTION("INDIRECT together with NEXT") {
        f.driver.descriptor(0, kTable, 16, kIndirectFlag | kNext, 1);
        f.driver.descriptor(1, kData, 1);
        put_descriptor(f.memory, kTable, kData, 1, 0, 0);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectWithNext, "2.7.5.3.1");
    }
    SECTION("a table of zero bytes") {
        f.driver.descriptor(0, kTable, 0, kIndirectFlag);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectBadLength, "2.7.5.3");
    }
    SECTION("a table length not a multiple of 16") {
        f.driver.descriptor(0, kTable, 24, kIndirectFlag);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectBadLength, "2.7.5.3");
    }
    SECTION("a table running past the end of RAM") {
        f.driver.descriptor(0, kRamSize - 16, 32, kIndirectFlag);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectTableOutsideRam, "2.7.5.3");
    }
    SECTION("a table whose address + length wraps 2^64") {
        f.driver.descriptor(0, 0xffff'ffff'ffff'fff0, 32, kIndirectFlag);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectTableOutsideRam, "2.7.5.3");
    }
    SECTION("an indirect descriptor inside the table") {
        f.driver.descriptor(0, kTable, 32, kIndirectFlag);
        put_descriptor(f.memory, kTable, kData, 1, kNext, 1);
        put_descriptor(f.memory, kTable + 16, kTable, 32, kIndirectFlag, 0);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectNested, "2.7.5.3.1");
    }
    SECTION("a next outside the table") {
        f.driver.descriptor(0, kTable, 32, kIndirectFlag);
        put_descriptor(f.memory, kTable, kData, 1, kNext, 2);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectNextOutOfRange, "2.7.5.3");
    }
    SECTION("a loop inside the table") {
        f.driver.descriptor(0, kTable, 32, kIndirectFlag);
        put_descriptor(f.memory, kTable, kData, 1, kNext, 1);
        put_descriptor(f.memory, kTable + 16, kData, 1, kNext, 0);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectLoop, "2.7.5.2");
    }
    SECTION("a chain longer than the queue size") {
        f.driver.descriptor(0, kTable, 8 * 16, kIndirectFlag);
        for (uint16_t i = 0; i < 5; ++i)
            put_descriptor(f.memory, kTable + 16 * i, kData, 1, i == 4 ? 0 : kNext, static_cast<uint16_t>(i + 1));
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectChainTooLong, "2.7.5.3.1");
    }
    SECTION("direct and indirect descriptors together longer than the queue size") {
        f.driver.descriptor(0, kData, 1, kNext, 1);
        f.driver.descriptor(1, kData, 1, kNext, 2);
        f.driver.descriptor(2, kTable, 3 * 16, kIndirectFlag);
        for (uint16_t i = 0; i < 3; ++i)
            put_descriptor(f.memory, kTable + 16 * i, kData, 1, i == 2 ? 0 : kNext, static_cast<uint16_t>(i + 1));
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::IndirectChainTooLong, "2.7.5.3.1");
    }
    SECTION("a buffer in the table outside RAM") {
        f.driver.descriptor(0, kTable, 16, kIndirectFlag);
        put_descriptor(f.memory, kTable, kRamSize - 1, 2, kWrite, 0);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::BufferOutsideRam, "2.7.5");
        CHECK_THAT(f.queue.broken_reason(), Contains("indirect descriptor 0"));
    }
    SECTION("a readable buffer after a writable one in the table") {
        f.driver.descriptor(0, kTable, 32, kIndirectFlag);
        put_descriptor(f.memory, kTable, kData, 1, kWrite | kNext, 1);
        put_descriptor(f.memory, kTable + 16, kData, 1, 0, 0);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::ReadableAfterWritable, "2.7.4.2");
    }
    SECTION("a writable direct descriptor before a table with a readable one") {
        f.driver.descriptor(0, kData, 1, kWrite | kNext, 1);
        f.driver.descriptor(1, kTable, 16, kIndirectFlag);
        put_descriptor(f.memory, kTable, kData, 1, 0, 0);
        f.driver.offer(0);
        require_breaks(f.queue, VirtQueueError::ReadableAfterWritable, "2.7.4.2");
    }
}

// --- recovery and device-side misuse ------------------------------------------------------------

TEST_CASE("virtqueue: reset clears the broken state; the error count stays", "[virtqueue]") {
    Fixture f;
    f.driver.offer(9);
    require_breaks(f.queue, VirtQueueError::HeadOutOfRange, "2.7.5");
    {
        LogCapture log;
        CHECK_FALSE(f.queue.configure(kRingPfn, 3));  // configure starts afresh, and may break again
        CHECK(f.queue.error() == VirtQueueError::BadQueueSize);
    }

    f.queue.reset();
    CHECK_FALSE(f.queue.broken());
    CHECK_FALSE(f.queue.ready());
    CHECK(f.queue.broken_reason().empty());
    CHECK(f.queue.error_count() == 2);

    // The driver sets up a fresh ring at another page, as after a device reset.
    Driver fresh{f.memory, kRingPfn + 0x40, 8};
    REQUIRE(f.queue.configure(fresh.pfn, 8));
    CHECK(f.queue.next_avail_index() == 0);
    CHECK(f.queue.used_index() == 0);
    fresh.descriptor(0, kData, 1, kWrite);
    fresh.offer(0);
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(f.queue.push(chain->head, 1));
    CHECK(fresh.used_index() == 1);
}

TEST_CASE("virtqueue: push refuses what the device never popped", "[virtqueue]") {
    Fixture f;
    {
        LogCapture log;
        CHECK_FALSE(f.queue.push(0, 0));  // nothing in flight
        f.driver.descriptor(0, kData, 1);
        f.driver.offer(0);
        REQUIRE(f.queue.pop());
        CHECK_FALSE(f.queue.push(8, 0));  // outside the table
        CHECK(log.lines().size() == 2);
    }
    CHECK(f.driver.used_index() == 0);
    CHECK_FALSE(f.queue.broken());  // a device bug, not the guest's
    CHECK(f.queue.error_count() == 0);
    CHECK(f.queue.push(0, 0));

    // After a reset, completions of old requests are dropped silently.
    f.queue.reset();
    LogCapture log;
    CHECK_FALSE(f.queue.push(0, 0));
    CHECK(log.lines().empty());
}

TEST_CASE("virtqueue: push_batch publishes several chains with one index update", "[virtqueue]") {
    Fixture f;
    for (uint16_t head = 0; head < 3; ++head) {
        f.driver.descriptor(head, kData + 0x100 * head, 0x100, kWrite);
        f.driver.offer(head);
    }
    std::vector<DescriptorChain> chains;
    while (auto chain = f.queue.pop()) chains.push_back(std::move(*chain));
    REQUIRE(chains.size() == 3);

    {
        // More than are in flight, or a head outside the table: nothing at all.
        LogCapture log;
        const std::vector<VirtQueue::UsedElement> too_many{{0, 1}, {1, 1}, {2, 1}, {0, 1}};
        CHECK_FALSE(f.queue.push_batch(too_many));
        const std::vector<VirtQueue::UsedElement> outside{{0, 1}, {9, 1}};
        CHECK_FALSE(f.queue.push_batch(outside));
        CHECK(log.count("device bug") == 2);
        CHECK(f.driver.used_index() == 0);
        CHECK(f.queue.in_flight() == 3);
    }

    // Out of order is fine: the used ring says which head each entry is.
    const std::vector<VirtQueue::UsedElement> batch{{2, 30}, {0, 10}};
    CHECK(f.queue.push_batch(batch));
    CHECK(f.driver.used_index() == 2);
    CHECK(f.driver.used_element(0) == std::pair<uint32_t, uint32_t>{2, 30});
    CHECK(f.driver.used_element(1) == std::pair<uint32_t, uint32_t>{0, 10});
    CHECK(f.queue.in_flight() == 1);
    CHECK(f.queue.needs_interrupt());
    CHECK(f.queue.push_batch({}));  // nothing to do
    CHECK(f.queue.push(1, 20));
    CHECK(f.driver.used_index() == 3);
    CHECK(f.queue.in_flight() == 0);
}

TEST_CASE("virtqueue: more chains in flight than the table holds breaks the queue", "[virtqueue]") {
    // A driver that offers one head again and again while the device still
    // holds it would otherwise keep pop() going for as long as it likes.
    Fixture f(4);
    f.driver.descriptor(0, kData, 1);
    for (int i = 0; i < 4; ++i) f.driver.offer(0);
    for (int i = 0; i < 4; ++i) REQUIRE(f.queue.pop());
    CHECK_FALSE(f.queue.pop());  // nothing available: not a violation
    CHECK_FALSE(f.queue.broken());
    f.driver.offer(0);
    require_breaks(f.queue, VirtQueueError::TooManyInFlight, "2.7.13.1");
    CHECK_THAT(f.queue.broken_reason(), Contains("all 4 chains"));
}

TEST_CASE("virtqueue: a full table in flight is fine once chains come back", "[virtqueue]") {
    Fixture f(4);
    for (uint16_t head = 0; head < 4; ++head) {
        f.driver.descriptor(head, kData + head, 1);
        f.driver.offer(head);
    }
    for (int i = 0; i < 4; ++i) REQUIRE(f.queue.pop());
    CHECK(f.queue.in_flight() == 4);
    REQUIRE(f.queue.push(2, 0));
    f.driver.offer(2);
    auto chain = f.queue.pop();
    REQUIRE(chain);
    CHECK(chain->head == 2);
    CHECK_FALSE(f.queue.broken());
}

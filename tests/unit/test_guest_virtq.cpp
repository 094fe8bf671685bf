// The bare-metal guest's driver-side split ring (guest-images/baremetal/
// virtq.c) against minikvm's device-side engine (VirtQueue) over one
// GuestMemory: layout at every legal size, chains direct and indirect,
// both interrupt-suppression schemes and both notification schemes, and the
// free-running indices across the 65535 -> 0 wrap.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "guest-images/baremetal/virtq.h"
#include "virtio/split_ring.h"
#include "virtio/virtqueue.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;

namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kRing = 1 * kMiB;  // guest-physical address of the ring
constexpr uint64_t kData = 8 * kMiB;  // buffers
constexpr uint64_t kEventIdx = 1ULL << VIRTIO_F_RING_EVENT_IDX;
constexpr uint64_t kIndirect = 1ULL << VIRTIO_F_RING_INDIRECT_DESC;

// A driver ring (the guest's code) and the device queue (minikvm's) on the
// same guest RAM; the driver's pointers are host pointers into it.
struct Pair {
    explicit Pair(uint16_t size, uint64_t features = 0) : slots(size) {
        uint8_t* ring = memory.host_base() + kRing;
        std::memset(ring, 0, virtq_legacy_bytes(size));
        virtq_init(&driver, 1, size, ring, reinterpret_cast<uintptr_t>(memory.host_base()), features, slots.data());
        device.set_features(features);
        REQUIRE(device.configure(virtq_pfn(&driver), size));
    }
    void* at(uint64_t guest_address) { return memory.host_base() + guest_address; }

    GuestMemory memory = GuestMemory::allocate(32 * kMiB);
    std::vector<virtq_slot> slots;
    virtq driver{};
    VirtQueue device{memory, "guest-virtq-test"};
};

int token_value(void* token) { return static_cast<int>(reinterpret_cast<uintptr_t>(token)); }
void* token_of(int value) { return reinterpret_cast<void*>(static_cast<uintptr_t>(value)); }

}  // namespace

TEST_CASE("guest virtq: legacy layout and a round trip at every legal queue size", "[guest-virtq]") {
    for (uint32_t size = 1; size <= VIRTQ_MAX_SIZE; size *= 2) {
        INFO("queue size " << size);
        CHECK(virtq_legacy_bytes(size) == split_ring::legacy_layout(size).end);
        Pair pair(static_cast<uint16_t>(size));
        CHECK(virtq_pfn(&pair.driver) == kRing >> 12);
        // One readable and (where the ring has room) one writable buffer.
        const unsigned in = size >= 2 ? 1 : 0;
        std::memcpy(pair.at(kData), "ping", 4);
        virtq_buf bufs[2] = {{pair.at(kData), 4}, {pair.at(kData + 4096), 64}};
        const int head = virtq_add(&pair.driver, bufs, 1, in, token_of(42));
        REQUIRE(head >= 0);
        CHECK(virtq_kick_prepare(&pair.driver));  // a fresh device wants kicks
        auto chain = pair.device.pop();
        REQUIRE(chain);
        CHECK(chain->head == head);
        REQUIRE(chain->readable.size() == 1);
        CHECK(chain->readable[0].guest_address == kData);
        CHECK(chain->readable_length == 4);
        CHECK(chain->writable.size() == in);
        if (in) {
            CHECK(chain->writable[0].guest_address == kData + 4096);
            chain->write(0, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("pong"), 4));
        }
        CHECK(!virtq_has_used(&pair.driver));
        REQUIRE(pair.device.push(chain->head, in ? 4 : 0));
        uint32_t len = 99;
        CHECK(token_value(virtq_get(&pair.driver, &len)) == 42);
        CHECK(len == (in ? 4u : 0u));
        CHECK(pair.driver.num_free == size);
        CHECK(pair.driver.device_error == nullptr);
        CHECK(!pair.device.broken());
    }
}

TEST_CASE("guest virtq: a full ring of chains, freed in any order", "[guest-virtq]") {
    Pair pair(8);
    std::vector<uint16_t> heads;
    for (int i = 0; i < 4; ++i) {
        virtq_buf bufs[2] = {{pair.at(kData + 64 * i), 8}, {pair.at(kData + 4096 + 64 * i), 8}};
        const int head = virtq_add(&pair.driver, bufs, 1, 1, token_of(i));
        REQUIRE(head >= 0);
    }
    virtq_buf one = {pair.at(kData), 1};
    CHECK(virtq_add(&pair.driver, &one, 1, 0, token_of(9)) == -1);  // 8 descriptors in use
    virtq_kick_prepare(&pair.driver);
    std::vector<DescriptorChain> chains;
    while (auto chain = pair.device.pop()) chains.push_back(*chain);
    REQUIRE(chains.size() == 4);
    // The device completes out of order; the driver follows the used ring.
    const int order[4] = {2, 0, 3, 1};
    for (int i : order) REQUIRE(pair.device.push(chains[i].head, 3));
    for (int i : order) {
        uint32_t len = 0;
        CHECK(token_value(virtq_get(&pair.driver, &len)) == i);
        CHECK(len == 3);
    }
    CHECK(pair.driver.num_free == 8);
    CHECK(virtq_get(&pair.driver, nullptr) == nullptr);
}

TEST_CASE("guest virtq: indirect tables", "[guest-virtq]") {
    Pair pair(4, kIndirect);
    auto* table = static_cast<virtq_desc*>(pair.at(kData + 0x10000));
    virtq_buf bufs[3] = {{pair.at(kData), 10}, {pair.at(kData + 100), 20}, {pair.at(kData + 200), 30}};
    const int head = virtq_add_indirect(&pair.driver, bufs, 2, 1, table, token_of(7));
    REQUIRE(head >= 0);
    CHECK(pair.driver.num_free == 3);  // one ring descriptor for three buffers
    CHECK(pair.driver.desc[head].flags == VIRTQ_DESC_F_INDIRECT);
    CHECK(pair.driver.desc[head].len == 3 * 16);
    virtq_kick_prepare(&pair.driver);
    auto chain = pair.device.pop();
    REQUIRE(chain);
    CHECK(chain->readable.size() == 2);
    CHECK(chain->readable_length == 30);
    CHECK(chain->writable.size() == 1);
    CHECK(chain->writable[0].guest_address == kData + 200);
    REQUIRE(pair.device.push(chain->head, 30));
    uint32_t len = 0;
    CHECK(token_value(virtq_get(&pair.driver, &len)) == 7);
    CHECK(len == 30);
    CHECK(pair.driver.num_free == 4);

    Pair direct(4);  // without the feature the driver refuses
    CHECK(virtq_add_indirect(&direct.driver, bufs, 2, 1, table, token_of(7)) == -1);
}

TEST_CASE("guest virtq: flag-based suppression (no EVENT_IDX)", "[guest-virtq]") {
    Pair pair(8);
    virtq_buf buf = {pair.at(kData), 1};
    // Kicks: the device's NO_NOTIFY flag is honoured.
    virtq_add(&pair.driver, &buf, 1, 0, token_of(1));
    CHECK(virtq_kick_prepare(&pair.driver));
    pair.device.disable_notifications();
    virtq_add(&pair.driver, &buf, 1, 0, token_of(2));
    CHECK(!virtq_kick_prepare(&pair.driver));
    CHECK(pair.device.enable_notifications());  // it finds the buffer it was not told about
    virtq_add(&pair.driver, &buf, 1, 0, token_of(3));
    CHECK(virtq_kick_prepare(&pair.driver));
    // Interrupts: NO_INTERRUPT in the available ring.
    while (auto chain = pair.device.pop()) REQUIRE(pair.device.push(chain->head, 0));
    CHECK(pair.device.needs_interrupt());
    virtq_get(&pair.driver, nullptr);
    virtq_disable_interrupts(&pair.driver);
    CHECK(*pair.driver.avail_flags == VIRTQ_AVAIL_F_NO_INTERRUPT);
    virtq_add(&pair.driver, &buf, 1, 0, token_of(4));
    virtq_kick_prepare(&pair.driver);
    auto chain = pair.device.pop();
    REQUIRE(pair.device.push(chain->head, 0));
    CHECK(!pair.device.needs_interrupt());
    // Re-enabling reports the entries that arrived while disabled.
    CHECK(virtq_enable_interrupts(&pair.driver));
    while (virtq_get(&pair.driver, nullptr)) {
    }
    CHECK(!virtq_enable_interrupts(&pair.driver));
}

TEST_CASE("guest virtq: EVENT_IDX kicks and interrupts across the index wrap", "[guest-virtq]") {
    Pair pair(4, kEventIdx);
    virtq_buf buf = {pair.at(kData), 1};
    virtq_enable_interrupts(&pair.driver);
    unsigned kicks = 0, interrupts = 0, completed = 0;
    // 70000 requests in batches of 3: the free-running indices wrap once;
    // every batch needs exactly one kick (the device re-arms avail_event
    // as it pops) and one interrupt (we re-arm used_event as we consume).
    const unsigned kRequests = 70002;
    for (unsigned sent = 0; sent < kRequests; sent += 3) {
        for (unsigned i = 0; i < 3; ++i) REQUIRE(virtq_add(&pair.driver, &buf, 1, 0, token_of(int(sent + i + 1))) >= 0);
        if (virtq_kick_prepare(&pair.driver)) {
            ++kicks;
            while (auto chain = pair.device.pop()) REQUIRE(pair.device.push(chain->head, 0));
            if (pair.device.needs_interrupt()) ++interrupts;
        }
        for (void* token; (token = virtq_get(&pair.driver, nullptr)) != nullptr; ++completed)
            REQUIRE(token_value(token) == int(completed + 1));
        CHECK(!virtq_enable_interrupts(&pair.driver));
    }
    CHECK(completed == kRequests);
    CHECK(kicks == kRequests / 3);
    CHECK(interrupts == kRequests / 3);
    CHECK(pair.driver.last_used == uint16_t(kRequests));  // wrapped past 65535
    CHECK(pair.device.used_index() == uint16_t(kRequests));
    CHECK(!pair.device.broken());

    // Suppressed: with used_event left behind, no interrupt; a delayed
    // re-arm asks for one only after the given number of entries.
    virtq_disable_interrupts(&pair.driver);
    virtq_add(&pair.driver, &buf, 1, 0, token_of(1));
    REQUIRE(virtq_kick_prepare(&pair.driver));
    auto chain = pair.device.pop();
    REQUIRE(pair.device.push(chain->head, 0));
    CHECK(!pair.device.needs_interrupt());
    virtq_get(&pair.driver, nullptr);
    CHECK(!virtq_enable_interrupts_after(&pair.driver, 2));
    for (int i = 0; i < 2; ++i) {
        virtq_add(&pair.driver, &buf, 1, 0, token_of(i + 1));
        virtq_kick_prepare(&pair.driver);
        auto c = pair.device.pop();
        REQUIRE(c);
        REQUIRE(pair.device.push(c->head, 0));
        CHECK(pair.device.needs_interrupt() == (i == 1));
    }
}

TEST_CASE("guest virtq: a device that breaks the used ring is caught", "[guest-virtq]") {
    Pair pair(4);
    virtq_buf bufs[2] = {{pair.at(kData), 1}, {pair.at(kData + 64), 8}};
    const int head = virtq_add(&pair.driver, bufs, 1, 1, token_of(1));
    REQUIRE(head >= 0);
    virtq_kick_prepare(&pair.driver);
    // A used length beyond the writable buffers.
    pair.driver.used_ring[0].id = uint32_t(head);
    pair.driver.used_ring[0].len = 9;
    *pair.driver.used_idx = 1;
    CHECK(virtq_get(&pair.driver, nullptr) == nullptr);
    REQUIRE(pair.driver.device_error != nullptr);
    CHECK(std::string(pair.driver.device_error).find("length") != std::string::npos);

    Pair other(4);
    other.driver.used_ring[0].id = 3;  // never made available
    *other.driver.used_idx = 1;
    CHECK(virtq_get(&other.driver, nullptr) == nullptr);
    CHECK(other.driver.device_error != nullptr);
}
